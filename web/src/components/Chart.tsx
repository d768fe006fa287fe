// A time-series chart (uPlot): this period's views and clicks, and the
// previous period's views as a dashed line over the same buckets.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Point } from '../api';

interface Props {
  points: Point[];
  previous?: Point[];
  interval: 'hour' | 'day';
  /** Accessible summary of what the chart shows. */
  label: string;
}

export function Chart({ points, previous, interval, label }: Props) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const xs = points.map((p) => Date.parse(p.start) / 1000);
    const data: uPlot.AlignedData = [
      xs,
      points.map((p) => p.views),
      points.map((p) => p.clicks),
      xs.map((_, i) => previous?.[i]?.views ?? null),
    ];
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height: 260,
      scales: { x: { time: true } },
      // Buckets are UTC hours and days (the API's): shown in UTC.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      axes: [
        interval === 'hour'
          ? { stroke: '#444', values: '{HH}:{mm}\n{MMM} {D}' }
          : { stroke: '#444', values: '{MMM} {D}', incrs: [86_400, 2 * 86_400, 7 * 86_400, 30 * 86_400] },
        { stroke: '#444', size: 56 },
      ],
      series: [
        {},
        { label: 'Views', stroke: '#1d4ed8', width: 2, fill: 'rgba(29,78,216,0.08)' },
        { label: 'Clicks', stroke: '#047857', width: 2 },
        { label: 'Views, previous period', stroke: '#6b7280', width: 1.5, dash: [6, 4] },
      ],
      legend: { live: true },
    };
    const plot = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 260 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [points, previous, interval]);
  return <div class="chart" ref={box} role="img" aria-label={label} />;
}
