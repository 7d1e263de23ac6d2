// A React page using the presence hooks, type-checked by CI with `tsc --strict` against the npm package
// (`npm pack static/`, installed as `presence-client`) and React's own types. The `@ts-expect-error` lines
// are part of the check: each must be an error, or tsc fails.

import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import type { Holder, PresenceClient, TokenSource, WatchedLease } from "presence-client";
import { useLeases, useLock, usePresence, type UseLockResult, type UsePresenceResult } from "presence-client/react";

const PRESENCE_WS = "wss://presence.example/ws";
const fetchToken: TokenSource = async ({ refresh }) => {
  const res = await fetch(`/presence-token${refresh ? "?fresh=1" : ""}`, { cache: "no-store" });
  return ((await res.json()) as { token: string }).token;
};

async function save(docId: string, field: string, text: string, fence: number): Promise<void> {
  await fetch(`/documents/${docId}/${field}`, { method: "PUT", body: JSON.stringify({ text, fence }) });
}

function who(holder: Holder | null): string {
  return holder ? `${holder.user.name} is editing` : "free";
}

/** One field of a form, guarded by its own named lock. */
function Field({ client, docId, name }: { client: PresenceClient | null; docId: string; name: string }) {
  const lock: UseLockResult = useLock(client, name);
  const [text, setText] = useState("");
  return (
    <label>
      {name} <small>{lock.canEdit ? "yours" : who(lock.holder)}</small>
      <input
        value={text}
        readOnly={!lock.canEdit}
        onFocus={() => void lock.acquire()}
        onChange={(e) => setText(e.target.value)}
        onBlur={() => {
          if (lock.fence !== null) void save(docId, name, text, lock.fence).then(() => lock.release());
        }}
      />
      <button onClick={() => void lock.request("May I?").then((r) => console.log("asked" in r ? r.deadline_ms : r.fence))}>
        Ask
      </button>
      <button onClick={() => void lock.takeover()}>Take over</button>
      <button onClick={() => void lock.decline()}>Keep it</button>
    </label>
  );
}

function Editor({ docId }: { docId: string }) {
  const presence: UsePresenceResult = usePresence({ url: PRESENCE_WS, workspace: docId, token: fetchToken });
  const { viewers, holder, canEdit, fence, status, user, client, setMeta } = presence;
  const lease = useLock(client); // the workspace's lease
  // @ts-expect-error: a lock is named by a string
  useLock(client, 7);
  return (
    <section onMouseMove={(e) => setMeta({ x: e.clientX, y: e.clientY })}>
      <p>
        {status} as {user?.name ?? "…"}: {viewers.map((v) => `${v.user.name} (${v.presence.length} tabs)`).join(", ")}
      </p>
      <p>{holder ? `${holder.user.name} holds the document (fence ${holder.fence ?? "?"})` : "Nobody holds it."}</p>
      <button disabled={canEdit} onClick={() => void presence.acquire({ wait: true })}>Edit the whole document</button>
      <button disabled={!lease.canEdit} onClick={() => void lease.release()}>Done ({fence ?? "-"})</button>
      <button onClick={() => void presence.takeover({ lock: "title" })}>Take the title</button>
      <button onClick={() => void presence.release({ lock: "title" })}>Release the title</button>
      {["title", "body"].map((name) => <Field key={name} client={client} docId={docId} name={name} />)}
    </section>
  );
}

function List({ ids }: { ids: string[] }) {
  const leases: ReadonlyMap<string, WatchedLease> = useLeases({ url: PRESENCE_WS, token: fetchToken, workspaces: ids });
  // @ts-expect-error: the map is read-only
  leases.set("doc-1", { holder: null, viewers: 0 });
  return (
    <ul>
      {ids.map((id) => (
        <li key={id}>{id}: {leases.get(id)?.holder?.user.name ?? "free"} ({leases.get(id)?.viewers ?? 0} viewing)</li>
      ))}
    </ul>
  );
}

// @ts-expect-error: useLeases needs the workspaces
const Broken = () => useLeases({ token: fetchToken });
void Broken;

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <List ids={["doc-1", "doc-2"]} />
    <Editor docId="doc-1" />
  </StrictMode>,
);
