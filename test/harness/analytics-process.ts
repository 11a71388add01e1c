// Starts a real analytics worker process (bun analytics/main.ts) for tests and bench, and kills or stops it.
import { startService, type ServiceProcess } from './service-process.ts'

export interface AnalyticsProcess extends Omit<ServiceProcess, 'ready'> {
  // The query API.
  url: string
}

// env: REDIS_URL and CLICKHOUSE_URL at least; ANALYTICS_PORT defaults to a free port.
export async function startAnalytics(env: Record<string, string>): Promise<AnalyticsProcess> {
  const proc = await startService('analytics/main.ts', { ANALYTICS_PORT: '0', LOG_LEVEL: 'info', ...env }, 'analytics listening', 'analytics worker')
  return { ...proc, url: `http://127.0.0.1:${proc.ready.port}` }
}
