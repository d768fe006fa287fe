// Realtime: visitors in the last 5 minutes and views per minute over the
// last 30, refreshed every 5 s (GET /v1/analytics/realtime reads raw events).
import { useEffect, useState } from 'preact/hooks';
import { get, type Realtime as RealtimeData } from '../api';
import { Card } from '../components/Card';
import { scope, type Ctx } from '../context';
import { n } from '../format';
import { message } from '../hooks';

const REFRESH_MS = 5000;

export function Realtime({ ctx }: { ctx: Ctx }) {
  const [data, setData] = useState<RealtimeData>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    let live = true;
    const tick = () =>
      get<RealtimeData>('/v1/analytics/realtime', scope(ctx)).then(
        (d) => live && (setData(d), setError(undefined)),
        (e) => live && setError(message(e)),
      );
    tick();
    const t = setInterval(tick, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [ctx.clientId]);
  const max = Math.max(1, ...(data?.per_minute.map((m) => m.views + m.clicks) ?? [1]));
  return (
    <div>
      <div class="page-head">
        <h1>Realtime</h1>
        <p class="muted">Refreshed every {REFRESH_MS / 1000} s{data && ` · as of ${new Date(data.at).toLocaleTimeString()}`}</p>
      </div>
      {error && <p role="alert" class="error">{error}</p>}
      {data && (
        <>
          <div class="cards" aria-live="polite">
            <Card testId="active" label="Visitors, last 5 minutes" value={n(data.active_visitors)} />
            <Card testId="views30" label="Views, last 30 minutes" value={n(data.views_last_30_min)} />
            <Card label="Click-outs, last 30 minutes" value={n(data.per_minute.reduce((s, m) => s + m.clicks, 0))} />
          </div>
          <section class="panel">
            <h2>Per minute</h2>
            <div class="minutes" role="img" aria-label={`Views per minute over the last 30 minutes, ${n(data.views_last_30_min)} in all`}>
              {data.per_minute.map((m) => (
                <div class="minute" key={m.minute} title={`${new Date(m.minute).toLocaleTimeString()}: ${m.views} views, ${m.clicks} click-outs`}>
                  <span class="mv" style={{ height: `${(m.views / max) * 100}%` }} />
                  <span class="mc" style={{ height: `${(m.clicks / max) * 100}%` }} />
                </div>
              ))}
            </div>
            <p class="legend">
              <span class="key kv" aria-hidden="true" /> views <span class="key kc" aria-hidden="true" /> click-outs
            </p>
          </section>
        </>
      )}
    </div>
  );
}
