// Joins a configured base_url and an API path, whether or not the base ends in a slash.
export function joinUrl(base: string, path: string): string {
  return `${base.endsWith('/') ? base.slice(0, -1) : base}${path}`
}
