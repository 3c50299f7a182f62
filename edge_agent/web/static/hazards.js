// Recent hazards: the latest events from GET /v1/events, each start with its snapshot (boxes drawn by the server).

const LIMIT = 8;
const REFRESH_MS = 5000;

export class RecentHazards {
  constructor({ tokens, list }) {
    this.tokens = tokens;
    this.list = list;
    this.state = { events: [], error: null };
    this.urls = new Map(); // snapshot id -> blob URL (fetched with the Authorization header, not ?token=)
  }

  headers() {
    const token = this.tokens.value;
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async refresh() {
    try {
      const resp = await fetch(`/v1/events?limit=${LIMIT}`, { cache: 'no-store', headers: this.headers() });
      if (!resp.ok) {
        this.state.error = `HTTP ${resp.status}`;
        return;
      }
      this.state.events = (await resp.json()).events;
      this.state.error = null;
      await this.render();
    } catch (err) {
      this.state.error = String(err);
    }
  }

  async snapshotUrl(id) {
    if (this.urls.has(id)) return this.urls.get(id);
    const resp = await fetch(`/v1/events/${id}/snapshot.jpg`, { headers: this.headers() });
    const url = resp.ok ? URL.createObjectURL(await resp.blob()) : null;
    this.urls.set(id, url);
    return url;
  }

  async render() {
    const items = [];
    for (const ev of this.state.events) {
      const li = document.createElement('li');
      li.dataset.id = ev.id;
      li.dataset.state = ev.state;
      const when = new Date(ev.time * 1000).toLocaleTimeString();
      const text = document.createElement('span');
      text.textContent = `${when} · ${ev.source} · ${ev.rule} ${ev.state}`;
      li.append(text);
      const url = ev.snapshot ? await this.snapshotUrl(ev.snapshot) : null;
      if (url) {
        const img = document.createElement('img');
        img.src = url;
        img.alt = `Snapshot of ${ev.rule} at ${ev.source}`;
        img.className = 'snapshot';
        li.append(img);
      }
      items.push(li);
    }
    this.list.replaceChildren(...items);
    this.list.dataset.count = String(items.length);
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), REFRESH_MS);
  }
}
