// The streaming services a link may point to: ids as the API and the edge
// use them (schemas::mongo::PlatformId), labels and brand colours as the
// landing page shows them.
export const PLATFORMS: { id: string; label: string; color: string }[] = [
  { id: 'spotify', label: 'Spotify', color: '#1DB954' },
  { id: 'apple-music', label: 'Apple Music', color: '#FA243C' },
  { id: 'deezer', label: 'Deezer', color: '#A238FF' },
  { id: 'youtube', label: 'YouTube', color: '#FF0000' },
  { id: 'soundcloud', label: 'SoundCloud', color: '#FF5500' },
  { id: 'tidal', label: 'TIDAL', color: '#000000' },
  { id: 'amazon-music', label: 'Amazon Music', color: '#25D1DA' },
  { id: 'bandcamp', label: 'Bandcamp', color: '#408294' },
];

/** A platform id's label ("apple-music" → "Apple Music"); others as they are. */
export function platformLabel(id: string): string {
  return PLATFORMS.find((p) => p.id === id)?.label ?? id;
}
