// The page of tests/browser/test_react.py: the React hooks of static/react.js on the real client, bundled
// with React from npm by esbuild (a development build, so StrictMode mounts, unmounts and mounts again).
import { StrictMode, memo, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { useLeases, useLock, usePresence } from "../../static/react.js";

// Every WebSocket the page makes, to count the live ones.
const sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class CountedWebSocket extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
};
window.sockets = () => ({
  made: sockets.length,
  live: sockets.filter((ws) => ws.readyState === NativeWebSocket.CONNECTING || ws.readyState === NativeWebSocket.OPEN).length,
});
window.renders = { editor: 0, lock: 0, list: 0 };
window.mounts = { mounted: 0, unmounted: 0 }; // proof that StrictMode did mount, unmount and mount again

/** A token function as an app would write it: inline, a new function at every render. */
const tokenFor = (user, name) => async () => {
  window.tokenCalls = (window.tokenCalls ?? 0) + 1;
  const res = await fetch(`/demo/token?${new URLSearchParams({ user, name })}`, { cache: "no-store" });
  return (await res.json()).token;
};

// memo: it renders again only when useLock's view of the lock changes, not with every viewer change
const LockBadge = memo(function LockBadge({ client, lock }) {
  const l = useLock(client, lock);
  window.renders.lock++;
  window.lease = l;
  return (
    <p id="lock" data-can-edit={String(l.canEdit)} data-fence={l.fence ?? ""}>
      {l.holder ? `${l.holder.user.name} holds it` : "free"}
    </p>
  );
});

function Editor({ workspace, user, name, token, tick }) {
  const p = usePresence({ workspace, token: token ?? tokenFor(user, name) }); // a string token, or a function
  window.renders.editor++;
  window.presence = p;
  return (
    <section id="editor" data-status={p.status} data-can-edit={String(p.canEdit)} data-tick={tick}>
      <p id="holder">{p.holder ? p.holder.user.name : "nobody"}</p>
      <ul id="viewers">
        {p.viewers.map((v) => <li key={v.user.id}>{v.user.name}</li>)}
      </ul>
      <LockBadge client={p.client} lock="" />
    </section>
  );
}

function List({ user, workspaces }) {
  const leases = useLeases({ token: tokenFor(user, user), workspaces });
  window.renders.list++;
  return (
    <ul id="list">
      {workspaces.map((id) => {
        const lease = leases.get(id);
        return (
          <li key={id} data-workspace={id}>
            {lease?.holder ? `${lease.holder.user.name} is editing` : "Free"}
          </li>
        );
      })}
    </ul>
  );
}

function App(props) {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    window.mounts.mounted++;
    return () => { window.mounts.unmounted++; };
  }, []);
  window.rerender = () => setTick((t) => t + 1); // a re-render that changes nothing the hooks depend on
  return props.list ? <List {...props} /> : <Editor {...props} tick={tick} />;
}

let root = null;
/** A token string fetched ahead, for a client that is given a string. */
window.fetchToken = async (user, name) => tokenFor(user, name)();
window.mount = (props) => {
  const el = document.createElement("div");
  document.body.append(el);
  root = createRoot(el);
  root.render(props.strict ? <StrictMode><App {...props} /></StrictMode> : <App {...props} />);
};
window.unmount = () => root?.unmount();
window.reactReady = true;
