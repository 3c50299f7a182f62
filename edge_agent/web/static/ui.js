// Small page helpers: plain error messages, text updates, number formatting and the access-token prompt.

const MAX_ERRORS = 6;
const TOKEN_KEY = 'edge-agent-token';

/** Set an element's text by id. */
export function setText(id, text) {
  const el = document.getElementById(id);
  if (el && el.textContent !== text) el.textContent = text;
}

/** A number with fixed decimals, or '–' when it is not a finite number. */
export function fmt(value, digits) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '–';
}

/** Show the hazard banner for these rule names (hidden when there are none). */
export function showHazards(el, names) {
  el.hidden = names.length === 0;
  el.textContent = names.length ? `⚠ Hazard: ${names.join(', ')}` : '';
}

/** Set a panel's state: its data-state attribute, the badge with id `${name}-state`, and state.state. */
export function setPanelState(section, name, state, value, detail = '') {
  state.state = value;
  section.dataset.state = value;
  setText(`${name}-state`, value);
  document.getElementById(`${name}-state`).title = detail;
}

/** Show an error plainly at the top of the page; a repeated key updates one entry and counts repeats. */
export function showError(text, { key = text, group = 'page' } = {}) {
  const list = document.getElementById('errors');
  let li = [...list.children].find((el) => el.dataset.key === key);
  if (li) {
    const count = Number(li.dataset.count) + 1;
    li.dataset.count = String(count);
    li.firstChild.textContent = `${text} (×${count})`;
  } else {
    li = document.createElement('li');
    li.dataset.key = key;
    li.dataset.group = group;
    li.dataset.count = '1';
    const span = document.createElement('span');
    span.textContent = text;
    const close = document.createElement('button');
    close.type = 'button';
    close.textContent = '×';
    close.title = 'Dismiss';
    close.addEventListener('click', () => li.remove());
    li.append(span, close);
  }
  list.prepend(li);
  while (list.children.length > MAX_ERRORS) list.lastChild.remove();
  console.warn(`[edge-agent] ${text}`);
}

/** Remove the errors of one group (e.g. after that part reconnected). */
export function clearErrors(group) {
  for (const li of [...document.getElementById('errors').children]) {
    if (li.dataset.group === group) li.remove();
  }
}

/** The access token: from ?token= (then removed from the address bar) or this browser's local storage,
 * so the page asks for it once (a wrong one is asked for again). */
export class Tokens {
  constructor(dialog, input, reasonEl, cancelButton) {
    this.dialog = dialog;
    this.input = input;
    this.reasonEl = reasonEl;
    this.pending = null;
    const url = new URL(location.href);
    const fromUrl = url.searchParams.get('token');
    if (fromUrl !== null) {
      this.store(fromUrl);
      url.searchParams.delete('token');
      history.replaceState(null, '', url);
    }
    cancelButton.addEventListener('click', () => dialog.close('cancel'));
  }

  get value() {
    try {
      return localStorage.getItem(TOKEN_KEY) || this.memory || '';
    } catch {
      return this.memory || '';
    }
  }

  store(token) {
    this.memory = token;
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch {
      // Storage may be disabled; the in-memory copy still works for this page.
    }
  }

  /** Ask the user for the token; resolves to the token, or null when cancelled. One prompt at a time. */
  ask(reason) {
    if (this.pending) return this.pending;
    this.reasonEl.textContent = reason;
    this.input.value = '';
    this.dialog.returnValue = '';
    this.pending = new Promise((resolve) => {
      this.dialog.addEventListener('close', () => {
        this.pending = null;
        const token = this.input.value.trim();
        if (this.dialog.returnValue === 'ok' && token) {
          this.store(token);
          resolve(token);
        } else {
          resolve(null);
        }
      }, { once: true });
    });
    this.dialog.showModal();
    this.input.focus();
    return this.pending;
  }
}
