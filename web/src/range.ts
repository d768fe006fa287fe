// Date ranges of the analytics pages: presets, custom days, and the
// previous period of the same length (what the comparison line shows).

export interface Range {
  /** Preset id ('24h', '7d', '30d', '90d') or 'custom'. */
  preset: string;
  /** Start, inclusive. */
  from: Date;
  /** End, exclusive. */
  to: Date;
}

export const PRESETS: { id: string; label: string; hours: number }[] = [
  { id: '24h', label: 'Last 24 hours', hours: 24 },
  { id: '7d', label: 'Last 7 days', hours: 24 * 7 },
  { id: '30d', label: 'Last 30 days', hours: 24 * 30 },
  { id: '90d', label: 'Last 90 days', hours: 24 * 90 },
];

/** The preset `id` ending now (to the next minute, so that answers cache). */
export function preset(id: string): Range {
  const p = PRESETS.find((x) => x.id === id) ?? PRESETS[1];
  const to = new Date(Math.ceil(Date.now() / 60_000) * 60_000);
  return { preset: p.id, from: new Date(to.getTime() - p.hours * 3_600_000), to };
}

/** Whole UTC days `from`..=`to` (`YYYY-MM-DD`). */
export function custom(from: string, to: string): Range {
  const f = new Date(`${from}T00:00:00Z`);
  const t = new Date(new Date(`${to}T00:00:00Z`).getTime() + 86_400_000);
  return { preset: 'custom', from: f, to: t };
}

/** The period of the same length just before `r`. */
export function previous(r: Range): Range {
  const len = r.to.getTime() - r.from.getTime();
  return { preset: r.preset, from: new Date(r.from.getTime() - len), to: r.from };
}

/** `hour` up to 3 days, `day` beyond. */
export function interval(r: Range): 'hour' | 'day' {
  return r.to.getTime() - r.from.getTime() <= 3 * 86_400_000 ? 'hour' : 'day';
}

/** The API's query for `r`. */
export function query(r: Range): { from: string; to: string } {
  return { from: r.from.toISOString(), to: r.to.toISOString() };
}

/** `YYYY-MM-DD` of a date (UTC). */
export const day = (d: Date) => d.toISOString().slice(0, 10);
