// Tracking health (seed 002 "Health Checks"): what the server-side engine
// recorded beside what the pixels could see, consent, DNT, bots, how far
// behind the pipeline is, and the tenant's alert states.
import { useState } from 'preact/hooks';
import { get, type Health as HealthData } from '../api';
import { Card } from '../components/Card';
import { RangePicker } from '../components/RangePicker';
import { scope, type Ctx } from '../context';
import { dateTime, n, percent } from '../format';
import { useLoad } from '../hooks';
import { preset, query, type Range } from '../range';

interface AlertState {
  kind: string;
  firing: boolean;
  since: string;
  value: number;
}

export function Health({ ctx }: { ctx: Ctx }) {
  const [range, setRange] = useState<Range>(() => preset('24h'));
  const h = useLoad(() => get<HealthData>('/v1/analytics/health', { ...scope(ctx), ...query(range) }), [ctx.clientId, range.from.getTime()]);
  const alerts = useLoad(() => get<{ alerts?: AlertState[] }>('/v1/alerts', scope(ctx)), [ctx.clientId]);
  const d = h.data;
  return (
    <div>
      <div class="page-head">
        <h1>Tracking health</h1>
        <div class="toolbar">
          <RangePicker range={range} onChange={setRange} />
        </div>
      </div>
      {h.error && <p role="alert" class="error">{h.error}</p>}
      {d && (
        <>
          <p>
            Status: <strong class={`status ${d.status}`} data-testid="health-status">{d.status}</strong>
            {d.last_event_at && <span class="muted"> · newest event {dateTime(d.last_event_at)}</span>}
          </p>
          <div class="cards">
            <Card testId="server-rate" label="Recorded server-side" value={percent(d.server_tracking_rate)} />
            <Card testId="client-rate" label="Seen by the pixels" value={d.pixels_configured ? percent(d.client_tracking_rate) : 'no pixel'} />
            <Card label="Recovered by the server" value={n(d.recovered_by_server)} />
            <Card label="Views (humans)" value={n(d.views)} />
            <Card label="Do Not Track / GPC" value={n(d.dnt)} />
            <Card label="Bots filtered" value={n(d.bots)} />
            <Card label="Ingest delay p50 / p99" value={`${d.ingest_delay_p50_s.toFixed(1)} / ${d.ingest_delay_p99_s.toFixed(1)} s`} />
          </div>
          <div class="grid2">
            <section class="panel">
              <h2>Consent</h2>
              <table class="bars">
                <thead>
                  <tr>
                    <th scope="col">Answer</th>
                    <th scope="col" class="num">Views</th>
                  </tr>
                </thead>
                <tbody>
                  {Object.entries(d.consent).map(([k, v]) => (
                    <tr key={k}>
                      <td>{k}</td>
                      <td class="num">{n(v)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              <p class="muted">Rollups computed up to {d.rollups_until ? dateTime(d.rollups_until) : '—'}.</p>
            </section>
            <section class="panel">
              <h2>Alerts</h2>
              {alerts.error && <p class="muted">{alerts.error}</p>}
              {alerts.data && (alerts.data.alerts ?? []).length === 0 && <p class="muted">No alert evaluated yet.</p>}
              {alerts.data && (alerts.data.alerts ?? []).length > 0 && (
                <table class="bars">
                  <thead>
                    <tr>
                      <th scope="col">Alert</th>
                      <th scope="col">State</th>
                      <th scope="col">Since</th>
                    </tr>
                  </thead>
                  <tbody>
                    {alerts.data.alerts!.map((a) => (
                      <tr key={a.kind}>
                        <td>{a.kind.replace(/_/g, ' ')}</td>
                        <td class={a.firing ? 'status warning' : 'status healthy'}>{a.firing ? 'firing' : 'ok'}</td>
                        <td>{dateTime(a.since)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </section>
          </div>
        </>
      )}
    </div>
  );
}
