// Views by country on a world map (Natural Earth 1:110m from world-atlas,
// loaded as a file of the build, drawn as SVG with d3-geo).
import { useEffect, useState } from 'preact/hooks';
import { geoNaturalEarth1, geoPath } from 'd3-geo';
import { feature } from 'topojson-client';
import type { Topology, GeometryCollection } from 'topojson-specification';
import type { Feature, Geometry } from 'geojson';
import worldUrl from 'world-atlas/countries-110m.json?url';
import { countryName, countryNumeric, n } from '../format';

type Country = Feature<Geometry, { name: string }>;
let world: Promise<Country[]> | null = null;

function load(): Promise<Country[]> {
  world ??= fetch(worldUrl)
    .then((r) => r.json())
    .then((t: Topology) => {
      const fc = feature(t, t.objects.countries as GeometryCollection<{ name: string }>);
      return fc.features as Country[];
    });
  return world;
}

const W = 960;
const H = 500;

export function WorldMap({ items }: { items: { value: string; count: number }[] }) {
  const [countries, setCountries] = useState<Country[] | null>(null);
  useEffect(() => {
    load().then(setCountries, () => setCountries([]));
  }, []);
  const byId = new Map<string, { code: string; count: number }>();
  for (const it of items) {
    const id = countryNumeric(it.value);
    if (id) byId.set(id, { code: it.value, count: it.count });
  }
  const max = Math.max(1, ...items.map((i) => i.count));
  const path = geoPath(geoNaturalEarth1().fitSize([W, H], { type: 'Sphere' }));
  const summary = items.slice(0, 5).map((i) => `${countryName(i.value)} ${n(i.count)}`).join(', ');
  return (
    <svg class="map" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`Views by country: ${summary || 'none'}`}>
      {countries?.map((c) => {
        const hit = byId.get(String(c.id));
        // Opacity scale from 0.15 to 1 by share of the largest country (square root: small ones stay visible).
        const level = hit ? 0.15 + 0.85 * Math.sqrt(hit.count / max) : 0;
        return (
          <path
            key={String(c.id)}
            d={path(c) ?? ''}
            class={hit ? 'hit' : 'land'}
            fill-opacity={hit ? level.toFixed(2) : undefined}
          >
            <title>{hit ? `${countryName(hit.code)}: ${n(hit.count)} views` : c.properties.name}</title>
          </path>
        );
      })}
    </svg>
  );
}
