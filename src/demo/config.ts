/**
 * The built-in configuration of --demo, as YAML so it passes through the same validator
 * as a user's file: a whole organisation, a workspace broken down by model and user, and
 * a repository over a week of daily buckets, each polled every 15 seconds.
 */
export function demoConfigYaml(baseUrl: string): string {
  return `# flashback-exporter --demo
api:
  baseUrl: ${JSON.stringify(baseUrl)}
  timeout: 5s
  concurrency: 4
defaults:
  schedule: "*/15 * * * * *"
  window: 24h
  timeBucketSize: 1h
  staleAfter: 2m
targets:
  - name: acme
    scope: org
    id: org-acme
  - name: platform
    scope: workspace
    id: ws-platform
    filters:
      model: [gpt-4o, claude-sonnet-4, gpt-4o-mini]
      userId: [u-alice, u-bob]
    labels:
      team: platform
  - name: checkout
    scope: repo
    id: repo-checkout
    window: 7d
    timeBucketSize: 1d
    bucket: complete
`;
}
