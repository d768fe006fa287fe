// The overview (a tenant's, or one link's with `linkId`): cards with the
// change against the previous period, the time series, the world map and
// the breakdowns; CSV export for roles that may.
import { useState } from 'preact/hooks';
import { blob, can, get, type Breakdown, type Link, type Overview as OverviewData, type Timeseries } from '../api';
import { Bars } from '../components/Bars';
import { Card } from '../components/Card';
import { Chart } from '../components/Chart';
import { RangePicker } from '../components/RangePicker';
import { WorldMap } from '../components/WorldMap';
import { scope, type Ctx } from '../context';
import { countryName, growth, n, percent, seconds } from '../format';
import { download, message, useLoad } from '../hooks';
import { platformLabel } from '../platforms';
import { interval, preset, previous, query, type Range } from '../range';

/** Breakdowns shown, with their titles. */
const DIMENSIONS: { id: string; title: string; label?: (v: string) => string }[] = [
  { id: 'device', title: 'Devices' },
  { id: 'platform', title: 'Platforms (click-outs)', label: platformLabel },
  { id: 'referrer', title: 'Referrers' },
  { id: 'utm_source', title: 'UTM sources' },
  { id: 'os', title: 'Operating systems' },
  { id: 'browser', title: 'Browsers' },
];

export function Overview({ ctx, linkId }: { ctx: Ctx; linkId?: string }) {
  const [range, setRange] = useState<Range>(() => preset('7d'));
  const [exportError, setExportError] = useState<string>();
  const base = linkId ? { smartlink_id: linkId } : scope(ctx);
  const iv = interval(range);
  const prev = previous(range);
  const link = useLoad(() => (linkId ? get<Link>(`/v1/smartlinks/${linkId}`) : Promise.resolve(undefined)), [linkId]);
  const data = useLoad(async () => {
    const [now, before, series, seriesBefore, country] = await Promise.all([
      get<OverviewData>('/v1/analytics/overview', { ...base, ...query(range) }),
      get<OverviewData>('/v1/analytics/overview', { ...base, ...query(prev) }),
      get<Timeseries>('/v1/analytics/timeseries', { ...base, ...query(range), interval: iv }),
      get<Timeseries>('/v1/analytics/timeseries', { ...base, ...query(prev), interval: iv }),
      get<Breakdown>('/v1/analytics/breakdown', { ...base, ...query(range), dimension: 'country', limit: 250 }),
    ]);
    return { now, before, series, seriesBefore, country };
  }, [ctx.clientId, linkId, range.from.getTime(), range.to.getTime()]);
  const breakdowns = useLoad(
    () =>
      Promise.all(
        DIMENSIONS.map((d) => get<Breakdown>('/v1/analytics/breakdown', { ...base, ...query(range), dimension: d.id, limit: 8 })),
      ),
    [ctx.clientId, linkId, range.from.getTime(), range.to.getTime()],
  );

  const exportCsv = async () => {
    setExportError(undefined);
    try {
      download(await blob('/v1/analytics/export', { ...base, ...query(range), interval: iv }), `analytics-${linkId ?? ctx.clientId ?? 'tenant'}.csv`);
    } catch (e) {
      setExportError(message(e));
    }
  };

  const d = data.data;
  return (
    <div>
      <div class="page-head">
        <h1>{linkId ? `Link analytics${link.data ? `: ${link.data.track.title}` : ''}` : 'Overview'}</h1>
        {link.data && (
          <p class="muted">
            {link.data.track.artist_name} · <a href={link.data.url}>{link.data.url}</a>
          </p>
        )}
        <div class="toolbar">
          <RangePicker range={range} onChange={setRange} />
          {can(ctx.who, 'analytics:export') && (
            <button type="button" onClick={exportCsv} data-testid="export">
              Export CSV
            </button>
          )}
        </div>
        {exportError && <p role="alert" class="error">{exportError}</p>}
      </div>
      {data.error && <p role="alert" class="error">{data.error}</p>}
      {!d && !data.error && <p class="muted" aria-busy="true">Loading…</p>}
      {d && (
        <>
          <div class="cards" aria-live="polite">
            <Card testId="views" label="Views" value={n(d.now.views)} change={growth(d.now.views, d.before.views)} />
            <Card testId="clicks" label="Click-outs" value={n(d.now.clicks)} change={growth(d.now.clicks, d.before.clicks)} />
            <Card
              testId="visitors"
              label="Unique visitors"
              value={n(d.now.unique_visitors)}
              change={growth(d.now.unique_visitors, d.before.unique_visitors)}
            />
            <Card testId="rate" label="Click-through rate" value={percent(d.now.conversion_rate)} />
            <Card testId="time" label="Avg. time on page" value={seconds(d.now.avg_time_on_page_s)} />
            <Card testId="bounce" label="Bounce rate" value={percent(d.now.bounce_rate)} />
            {d.now.conversion_value_minor > 0 && (
              <Card label="Conversion value" value={(d.now.conversion_value_minor / 100).toFixed(2)} />
            )}
            <Card testId="bots" label="Bots filtered" value={n(d.now.bots)} />
          </div>
          <section class="panel">
            <h2>
              Views and click-outs per {iv}, UTC <span class="muted">(dashed: previous period)</span>
            </h2>
            <Chart
              points={d.series.points}
              previous={d.seriesBefore.points}
              interval={iv}
              label={`Views and click-outs per ${iv}: ${n(d.now.views)} views, ${n(d.now.clicks)} click-outs`}
            />
          </section>
          <div class="grid2">
            <section class="panel">
              <h2>Countries</h2>
              <WorldMap items={d.country.items} />
            </section>
            <Bars title="Top countries" metric="Views" items={d.country.items.slice(0, 10)} label={countryName} />
          </div>
        </>
      )}
      {breakdowns.data && (
        <div class="grid3">
          {DIMENSIONS.map((dim, i) => (
            <Bars key={dim.id} title={dim.title} metric={breakdowns.data![i].metric === 'clicks' ? 'Clicks' : 'Views'} items={breakdowns.data![i].items} label={dim.label} />
          ))}
        </div>
      )}
    </div>
  );
}
