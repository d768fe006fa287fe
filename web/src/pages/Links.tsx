// Links: search by text, filter by status, open a link's analytics, edit,
// download its QR code, archive (each action only for roles that may).
import { useState } from 'preact/hooks';
import { blob, can, get, send, type Link } from '../api';
import { scope, type Ctx } from '../context';
import { n, percent } from '../format';
import { download, message, useLoad } from '../hooks';

export function Links({ ctx }: { ctx: Ctx }) {
  const [q, setQ] = useState('');
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState('');
  const [error, setError] = useState<string>();
  const list = useLoad(
    () => get<{ items: Link[] }>('/v1/smartlinks', { ...scope(ctx), q: search || undefined, status: status || undefined, limit: 200 }),
    [ctx.clientId, search, status],
  );
  const qr = async (l: Link) => {
    try {
      download(await blob(`/v1/smartlinks/${l.id}/qr`, { format: 'png', size: 12 }), `${l.slug}-qr.png`);
    } catch (e) {
      setError(message(e));
    }
  };
  const archive = async (l: Link) => {
    if (!confirm(`Archive ${l.slug}? Its page stops answering.`)) return;
    try {
      await send('DELETE', `/v1/smartlinks/${l.id}`);
      list.reload();
    } catch (e) {
      setError(message(e));
    }
  };
  return (
    <div>
      <div class="page-head">
        <h1>Links</h1>
        <div class="toolbar">
          <form
            role="search"
            onSubmit={(e) => {
              e.preventDefault();
              setSearch(q.trim());
            }}
          >
            <label>
              Search
              <input type="search" value={q} placeholder="slug, title or artist" onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
            </label>
            <label>
              Status
              <select value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
                <option value="">any</option>
                <option value="active">active</option>
                <option value="draft">draft</option>
                <option value="archived">archived</option>
              </select>
            </label>
            <button type="submit">Search</button>
          </form>
          {can(ctx.who, 'links:create') && (
            <a class="button primary" href="#/links/new" data-testid="new-link">
              New link
            </a>
          )}
        </div>
      </div>
      {(error || list.error) && <p role="alert" class="error">{error || list.error}</p>}
      {list.data && (
        <div class="scroll">
          <table class="bars links">
            <thead>
              <tr>
                <th scope="col">Track</th>
                <th scope="col">URL</th>
                <th scope="col">Status</th>
                <th scope="col" class="num">Views</th>
                <th scope="col" class="num">CTR</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.data.items.length === 0 && (
                <tr>
                  <td colSpan={6} class="muted">
                    No link matches.
                  </td>
                </tr>
              )}
              {list.data.items.map((l) => (
                <tr key={l.id} data-slug={l.slug}>
                  <td>
                    <strong>{l.track.title}</strong>
                    <div class="muted">{l.track.artist_name}</div>
                  </td>
                  <td>
                    <a href={l.url}>{l.url.replace(/^https?:\/\//, '')}</a>
                  </td>
                  <td>
                    <span class={`pill ${l.status}`}>{l.status}</span>
                  </td>
                  <td class="num">{n(l.stats.total_views ?? 0)}</td>
                  <td class="num">{percent(l.stats.conversion_rate ?? 0)}</td>
                  <td class="actions">
                    <a href={`#/links/${l.id}/analytics`}>Analytics</a>
                    {can(ctx.who, 'links:update') && <a href={`#/links/${l.id}`}>Edit</a>}
                    <button type="button" class="linkish" onClick={() => qr(l)}>
                      QR<span class="sr-only"> code of {l.slug}</span>
                    </button>
                    {can(ctx.who, 'links:delete') && l.status !== 'archived' && (
                      <button type="button" class="linkish danger" onClick={() => archive(l)}>
                        Archive<span class="sr-only"> {l.slug}</span>
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
