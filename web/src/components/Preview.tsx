// A live preview of a link's landing page as the edge renders it: title,
// artist, cover, one "Listen" button per service in its brand colour, on
// the tenant's colours. Images are not loaded here (the dashboard's CSP
// allows its own files only): the cover shows as a placeholder.
import { PLATFORMS } from '../platforms';

interface Props {
  title: string;
  artist: string;
  platforms: Record<string, string>;
  primary?: string;
  secondary?: string;
  url: string;
}

/** Black or white, whichever reads better on `hex` (WCAG relative luminance). */
function textOn(hex: string): string {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex);
  if (!m) return '#fff';
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = parseInt(m[1].slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (l + 0.05) / 0.05 > 1.05 / (l + 0.05) ? '#000' : '#fff';
}

export function Preview({ title, artist, platforms, primary = '#1DB954', secondary = '#121212', url }: Props) {
  const buttons = PLATFORMS.filter((p) => platforms[p.id]);
  return (
    <figure class="preview" aria-label="Landing page preview">
      <div class="phone" style={{ background: secondary, color: textOn(secondary) }}>
        <div class="cover" style={{ background: `linear-gradient(135deg, ${primary}, ${secondary})` }} aria-hidden="true">
          {(title || '?').slice(0, 1).toUpperCase()}
        </div>
        <div class="pv-title">{title || 'Title'}</div>
        <div class="pv-artist">{artist || 'Artist'}</div>
        {buttons.length === 0 && <div class="pv-empty">Add a destination to show its button</div>}
        {buttons.map((p) => (
          <div class="pv-button" key={p.id}>
            <span class="pv-dot" style={{ background: p.color }} aria-hidden="true" />
            <span>{p.label}</span>
            <span class="pv-listen" style={{ background: primary, color: textOn(primary) }}>
              Listen
            </span>
          </div>
        ))}
      </div>
      <figcaption class="muted">{url}</figcaption>
    </figure>
  );
}
