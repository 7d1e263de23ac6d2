// @ts-check
// The others' carets over the demo editor. Each tab shares its caret and selection as its presence meta,
// {cursor, selection} (character offsets); every other tab draws them over its textarea, in each person's
// colour, with their name.
import { colourOf } from "/static/demo-page.js";

/** @typedef {{id: string, name: string}} Person */
/** @typedef {{user: Person, cursor: number, selection: number[]|null}} Caret */

/**
 * The meta that shares this tab's caret: null when the focus is not in `editor` (or it is disabled).
 * @param {HTMLTextAreaElement} editor
 */
export function caretMeta(editor) {
  if (document.activeElement !== editor || editor.disabled) return null;
  const { selectionStart: start, selectionEnd: end } = editor;
  return { cursor: editor.selectionDirection === "backward" ? start : end, selection: start === end ? null : [start, end] };
}

/**
 * The carets of every tab but `conn` (this one), from the viewers' presence: anyone's meta, checked, not trusted.
 * @param {{user: Person, presence?: {conn: string, meta: Record<string, unknown>|null}[]}[]} viewers
 * @param {string|null} conn
 * @returns {Caret[]}
 */
export function caretsOf(viewers, conn) {
  /** @type {Caret[]} */
  const carets = [];
  for (const v of viewers) {
    for (const tab of v.presence ?? []) {
      const m = tab.meta;
      if (tab.conn === conn || !m || !Number.isInteger(m.cursor)) continue;
      const s = m.selection;
      const selection = Array.isArray(s) && s.length === 2 && s.every(Number.isInteger) ? s : null;
      carets.push({ user: v.user, cursor: Number(m.cursor), selection });
    }
  }
  return carets;
}

/** What the mirror copies from the textarea: everything that decides where a character goes. */
const LAYOUT = ["font-family", "font-size", "font-weight", "font-style", "line-height", "letter-spacing",
  "word-spacing", "tab-size", "text-indent", "padding-top", "padding-right", "padding-bottom", "padding-left"];
const NAME_HEIGHT = 16; // a name flag above a caret on the first visible line would be cut off: it goes below

/**
 * Draws `carets` in `box`, an overlay of `editor` (its positioned parent is the editor's). A transparent copy
 * of the text (the mirror), laid out as the textarea lays it out (its font, padding, width and wrapping), tells
 * where each position is: an empty marker there gives the x, and its line the y. Positions are in the text as
 * this page has it.
 * @param {HTMLElement} box @param {HTMLTextAreaElement} editor @param {Caret[]} carets
 * @param {(user: Person) => string} label  the name on a caret
 */
export function drawCarets(box, editor, carets, label) {
  box.hidden = carets.length === 0;
  if (box.hidden) return box.replaceChildren();
  const text = editor.value;
  const at = (/** @type {number} */ n) => Math.max(0, Math.min(text.length, n));
  // the overlay covers the textarea's padding box: inside its border, beside its scrollbar
  Object.assign(box.style, {
    left: `${editor.offsetLeft + editor.clientLeft}px`, top: `${editor.offsetTop + editor.clientTop}px`,
    width: `${editor.clientWidth}px`, height: `${editor.clientHeight}px`,
  });
  const cs = getComputedStyle(editor);
  const mirror = document.createElement("div");
  mirror.className = "mirror";
  for (const prop of LAYOUT) mirror.style.setProperty(prop, cs.getPropertyValue(prop));
  const cuts = [...new Set([0, text.length, ...carets.flatMap((k) => [k.cursor, ...(k.selection ?? [])].map(at))])]
    .sort((a, b) => a - b);
  /** @type {[Caret, HTMLElement][]} */
  const markers = [];
  cuts.forEach((from, i) => {
    for (const k of carets.filter((k) => at(k.cursor) === from)) {
      const marker = document.createElement("span");
      markers.push([k, marker]);
      mirror.append(marker);
    }
    const to = cuts[i + 1];
    if (to === undefined) return;
    const over = carets.find((k) => k.selection && at(k.selection[0]) <= from && to <= at(k.selection[1]));
    if (!over) return mirror.append(text.slice(from, to));
    const mark = document.createElement("mark");
    mark.style.setProperty("--who", colourOf(over.user.id));
    mark.textContent = text.slice(from, to);
    mirror.append(mark);
  });
  mirror.append("\u200b"); // a text that ends with a newline still has its last, empty line
  mirror.style.transform = `translate(${-editor.scrollLeft}px, ${-editor.scrollTop}px)`;
  box.replaceChildren(mirror);
  const origin = mirror.getBoundingClientRect();
  const left = box.getBoundingClientRect().left;
  const padTop = parseFloat(cs.paddingTop);
  const lineHeight = parseFloat(cs.lineHeight) || parseFloat(cs.fontSize) * 1.2;
  for (const [k, marker] of markers) {
    const r = marker.getBoundingClientRect();
    const line = Math.max(0, Math.floor((r.top + r.height / 2 - origin.top - padTop) / lineHeight));
    const top = padTop + line * lineHeight - editor.scrollTop;
    const caret = document.createElement("div");
    caret.className = top < NAME_HEIGHT ? "caret first-line" : "caret";
    Object.assign(caret.dataset, { user: k.user.id, offset: String(at(k.cursor)) });
    caret.style.setProperty("--who", colourOf(k.user.id));
    Object.assign(caret.style, { left: `${r.left - left}px`, top: `${top}px`, height: `${lineHeight}px` });
    const name = document.createElement("span");
    name.className = "caret-name";
    name.textContent = label(k.user);
    caret.append(name);
    box.append(caret);
  }
}
