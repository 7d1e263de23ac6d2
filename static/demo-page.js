// @ts-check
// What the demo pages (the editor, the form, the list) share: demo tokens, the connection line, each
// person's colour, and starting from the "who are you, which document" form and the page's query.

/** A demo token for `user` (the server mints them in dev mode). @param {string} user @param {string} name */
export async function demoToken(user, name) {
  const res = await fetch(`/demo/token?${new URLSearchParams({ user, name })}`, { cache: "no-store" });
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  return /** @type {string} */ ((await res.json()).token);
}

/** A time of day as the pages show it (14:05, or 2:05 PM). @param {number} [ms] */
export const time = (ms = Date.now()) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

const COLOURS = ["#cf222e", "#1f6feb", "#1a7f37", "#8250df", "#bf3989", "#9a6700", "#0e7c86", "#bc4c00"];

/** A person's colour, by user id: the same in every browser. @param {string} id */
export const colourOf = (id) =>
  COLOURS[[...id].reduce((h, ch) => (h * 31 + (ch.codePointAt(0) ?? 0)) >>> 0, 7) % COLOURS.length];

/**
 * Shows a client's `connection` event in the page's status line (`data-status` styles it).
 * @param {HTMLElement} line
 * @param {{status: string, code?: number, reason?: string, delay?: number}} d
 * @param {string} [name]  who we are connected as
 */
export function showConnection(line, d, name) {
  const why = d.code ? ` (${d.code}${d.reason ? ` ${d.reason}` : ""})` : d.reason ? ` (${d.reason})` : "";
  line.dataset.status = d.status;
  line.textContent = {
    connecting: "Connecting…",
    open: `Connected as ${name}`,
    reconnecting: `Reconnecting in ${((d.delay ?? 0) / 1000).toFixed(1)} s${why}`,
    closed: `Disconnected${why}`,
  }[/** @type {"connecting"|"open"|"reconnecting"|"closed"} */ (d.status)] ?? d.status;
}

/** An `error` event that no request claimed, in words. @param {{code: string, message?: string}} d */
export const errorText = (d) => (d.code === "token_failed"
  ? `Could not get a token from the server (${d.message}); retrying by itself.`
  : `Problem: ${d.message || d.code}`);

/**
 * Connects `client`; when it gives up (a refused token, a closed client), the status line says why, as long
 * as the page still shows this client.
 * @param {{connect: () => Promise<unknown>}} client @param {HTMLElement} line @param {() => boolean} current
 */
export async function connectShowing(client, line, current) {
  try {
    await client.connect();
  } catch (err) {
    if (!current()) return;
    line.dataset.status = "closed";
    line.textContent = `Cannot connect: ${/** @type {Error} */ (err).message}`;
  }
}

const WORKSPACE_RE = /^[A-Za-z0-9._~:@\/-]{1,200}$/;

/**
 * Joins with what the identity form says, on every submit (the query follows, so a reload rejoins), and
 * once now: from the page's query, or as a random guest.
 * @param {{form: HTMLFormElement, user: HTMLInputElement, name: HTMLInputElement, workspace: HTMLInputElement}} el
 * @param {{defaultWorkspace: string, what: string, say: (text: string) => void,
 *          join: (who: {user: string, name: string, workspace: string}) => unknown}} page
 *   what: the kind of workspace, for the error ("Document", "Form")
 */
export function startFromQuery(el, page) {
  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const who = { user: el.user.value.trim(), name: el.name.value.trim(), workspace: el.workspace.value.trim() };
    if (!WORKSPACE_RE.test(who.workspace)) {
      page.say(`${page.what} ids use letters, digits and . _ ~ : @ / - (at most 200).`);
      return;
    }
    const url = new URL(location.href);
    for (const [k, v] of Object.entries(who)) url.searchParams.set(k, v);
    history.replaceState(null, "", url);
    page.join(who);
  });
  const params = new URLSearchParams(location.search);
  const suffix = Math.random().toString(36).slice(2, 6);
  el.user.value = params.get("user") || `guest-${suffix}`;
  el.name.value = params.get("name") || params.get("user") || `Guest ${suffix.toUpperCase()}`;
  el.workspace.value = params.get("workspace") || page.defaultWorkspace;
  el.form.requestSubmit();
}
