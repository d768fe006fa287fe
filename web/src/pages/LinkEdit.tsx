// Creates or edits a link, with a live preview of its landing page and,
// once saved, its QR code.
import { useEffect, useState } from 'preact/hooks';
import { blob, get, send, type Link } from '../api';
import { Preview } from '../components/Preview';
import type { Ctx } from '../context';
import { download, message } from '../hooks';
import { PLATFORMS } from '../platforms';

interface Form {
  slug: string;
  status: string;
  title: string;
  artist: string;
  album: string;
  tags: string;
  platforms: Record<string, string>;
}

const EMPTY: Form = { slug: '', status: 'active', title: '', artist: '', album: '', tags: '', platforms: {} };

export function LinkEdit({ ctx, id }: { ctx: Ctx; id?: string }) {
  const [form, setForm] = useState<Form>(EMPTY);
  const [saved, setSaved] = useState<Link>();
  const [error, setError] = useState<{ text: string; field?: string }>();
  const [busy, setBusy] = useState(false);
  const [qr, setQr] = useState<string>();
  useEffect(() => {
    if (!id) return;
    get<Link>(`/v1/smartlinks/${id}`).then(
      (l) => {
        setSaved(l);
        setForm({
          slug: l.slug,
          status: l.status,
          title: l.track.title,
          artist: l.track.artist_name,
          album: l.track.album_name ?? '',
          tags: l.tags.join(', '),
          platforms: { ...l.platforms },
        });
      },
      (e) => setError({ text: message(e) }),
    );
  }, [id]);
  useEffect(() => {
    if (!saved) return;
    let url: string | undefined;
    blob(`/v1/smartlinks/${saved.id}/qr`, { format: 'svg' }).then((b) => {
      url = URL.createObjectURL(b);
      setQr(url);
    });
    return () => url && URL.revokeObjectURL(url);
  }, [saved?.id, saved?.slug]);

  const set = (k: keyof Form) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const setPlatform = (p: string) => (e: Event) => setForm({ ...form, platforms: { ...form.platforms, [p]: (e.target as HTMLInputElement).value } });

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const platforms = Object.fromEntries(Object.entries(form.platforms).filter(([, v]) => v.trim() !== '').map(([k, v]) => [k, v.trim()]));
    const track = { title: form.title.trim(), artist_name: form.artist.trim(), album_name: form.album.trim() || undefined };
    const tags = form.tags.split(',').map((t) => t.trim()).filter(Boolean);
    try {
      const link = saved
        ? await send<Link>('PATCH', `/v1/smartlinks/${saved.id}`, { status: form.status, track, platforms, tags })
        : await send<Link>('POST', '/v1/smartlinks', {
            client_id: ctx.who.kind === 'operator' ? ctx.clientId : undefined,
            slug: form.slug.trim(),
            status: form.status,
            track,
            platforms,
            tags,
          });
      setSaved(link);
      if (!saved) history.replaceState(null, '', `#/links/${link.id}`);
    } catch (err) {
      const f = (err as { field?: string }).field;
      setError({ text: message(err), field: f });
    } finally {
      setBusy(false);
    }
  };

  const host = ctx.tenant?.domain ?? 'your-domain';
  const url = saved?.url ?? `https://${host}/${form.slug || 'slug'}`;
  const invalid = (f: string) => (error?.field && error.field.startsWith(f) ? true : undefined);
  return (
    <div>
      <div class="page-head">
        <h1>{saved ? `Edit ${saved.slug}` : 'New link'}</h1>
        <p>
          <a href="#/links">Back to links</a>
        </p>
      </div>
      <div class="edit">
        <form class="panel form" onSubmit={save} aria-describedby={error ? 'form-error' : undefined}>
          <label>
            Slug
            <input
              required
              pattern="[a-z0-9\-]{1,64}"
              value={form.slug}
              disabled={!!saved}
              onInput={set('slug')}
              aria-invalid={invalid('slug')}
              name="slug"
              autocomplete="off"
            />
            <small>Lowercase letters, digits and dashes: {url}</small>
          </label>
          <label>
            Status
            <select value={form.status} onChange={set('status')} name="status">
              <option value="active">active</option>
              <option value="draft">draft</option>
              {saved && <option value="archived">archived</option>}
            </select>
          </label>
          <label>
            Title
            <input required maxLength={200} value={form.title} onInput={set('title')} name="title" aria-invalid={invalid('track.title')} />
          </label>
          <label>
            Artist
            <input required maxLength={200} value={form.artist} onInput={set('artist')} name="artist" aria-invalid={invalid('track.artist_name')} />
          </label>
          <label>
            Album
            <input maxLength={200} value={form.album} onInput={set('album')} name="album" />
          </label>
          <label>
            Tags
            <input value={form.tags} onInput={set('tags')} name="tags" placeholder="release, single" />
            <small>Separated by commas.</small>
          </label>
          <fieldset>
            <legend>Destinations</legend>
            {PLATFORMS.map((p) => (
              <label key={p.id}>
                {p.label}
                <input
                  type="url"
                  name={`platform-${p.id}`}
                  placeholder="https://…"
                  value={form.platforms[p.id] ?? ''}
                  onInput={setPlatform(p.id)}
                  aria-invalid={invalid(`platforms.${p.id}`)}
                />
              </label>
            ))}
          </fieldset>
          {error && (
            <p role="alert" class="error" id="form-error">
              {error.text}
            </p>
          )}
          {saved && !error && (
            <p role="status" class="ok" data-testid="saved">
              Saved. Live at <a href={saved.url}>{saved.url}</a>
            </p>
          )}
          <button type="submit" class="primary" disabled={busy}>
            {saved ? 'Save changes' : 'Create link'}
          </button>
        </form>
        <div>
          <Preview
            title={form.title}
            artist={form.artist}
            platforms={form.platforms}
            primary={ctx.tenant?.branding?.primary_color}
            secondary={ctx.tenant?.branding?.secondary_color}
            url={url}
          />
          {saved && qr && (
            <div class="panel qr">
              <h2>QR code</h2>
              <img src={qr} alt={`QR code of ${saved.url}`} width={160} height={160} />
              <button type="button" onClick={async () => download(await blob(`/v1/smartlinks/${saved.id}/qr`, { format: 'png', size: 12 }), `${saved.slug}-qr.png`)}>
                Download PNG
              </button>
            </div>
          )}
        </div>
      </div>
    </div>
  );
}
