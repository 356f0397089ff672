/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-call -- rendered manifests and parsed YAML are untyped data; the assertions check their shape */
/**
 * The Helm chart, rendered by a real helm (see helm.ts): values.yaml against values.schema.json,
 * `helm lint --strict`, and every object that `helm template` renders, with the default values
 * and with the other value sets below, validated against the Kubernetes API schemas of
 * kubernetes-models (and prometheus-operator's for ServiceMonitor), plus what the apps need:
 * the commands, ports and probes of docs/cluster mode, non-root pods, and the shared claim.
 */
import { parseRedisUrl } from '@annex-p2phttp/redis';
import Ajv from 'ajv';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as core from 'kubernetes-models/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parsePolicy } from '@annex-p2phttp/config';
import { CHART_DIR, helm } from './helm';

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
  stringData?: Record<string, string>;
};

/** The model class of each kind the chart renders; an unknown kind fails the test. */
const MODELS: Record<string, new (data: never) => object> = {
  'v1/ConfigMap': core.ConfigMap,
  'v1/Secret': core.Secret,
  'v1/Service': core.Service,
  'v1/ServiceAccount': core.ServiceAccount,
  'v1/PersistentVolumeClaim': core.PersistentVolumeClaim,
  'apps/v1/Deployment': apps.Deployment,
  'apps/v1/StatefulSet': apps.StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': autoscaling.HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': policy.PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': monitoring.ServiceMonitor,
};

const TIMEOUT = 300_000;

async function render(sets: readonly string[] = []): Promise<K8sObject[]> {
  const args = ['template', 'rel', CHART_DIR, '--namespace', 'annex'];
  for (const set of sets) {
    args.push('--set', set);
  }
  const result = await helm(args);
  expect(result.stderr, result.stderr).toBe('');
  expect(result.code).toBe(0);
  const objects: K8sObject[] = [];
  for (const document of parseAllDocuments(result.stdout)) {
    expect(document.errors).toEqual([]);
    const object = document.toJS() as K8sObject | null;
    if (object !== null) {
      objects.push(object);
    }
  }
  return objects;
}

function validateAll(objects: readonly K8sObject[]): void {
  for (const object of objects) {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`];
    expect(Model, `no schema for ${object.apiVersion} ${object.kind}`).toBeDefined();
    const model = new Model!(object as never) as { validate(): void };
    expect(() => model.validate(), `${object.kind} ${object.metadata.name}`).not.toThrow();
  }
}

function find(objects: readonly K8sObject[], kind: string, component: string): K8sObject {
  const found = objects.filter(
    (o) => o.kind === kind && o.metadata.labels?.['app.kubernetes.io/component'] === component,
  );
  expect(found, `${kind} of ${component}`).toHaveLength(1);
  return found[0]!;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function container(workload: K8sObject): any {
  return workload.spec.template.spec.containers[0];
}

describe('values', () => {
  it('values.yaml validates against values.schema.json, and the schema refuses bad values', async () => {
    const schema = JSON.parse(await readFile(path.join(CHART_DIR, 'values.schema.json'), 'utf8'));
    const values = parseYaml(await readFile(path.join(CHART_DIR, 'values.yaml'), 'utf8'));
    const ajv = new Ajv({ allErrors: true, strict: true });
    const validate = ajv.compile(schema);
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
    const bad = structuredClone(values);
    bad.auth.unauthenticated = 'everyone';
    bad.proxyWorker.typo = 1;
    expect(validate(bad)).toBe(false);
    expect(validate.errors?.map((e) => e.instancePath).sort()).toEqual([
      '/auth/unauthenticated',
      '/proxyWorker',
    ]);
  });
});

describe('helm', () => {
  it('lints strictly, and refuses values outside the schema', { timeout: TIMEOUT }, async () => {
    const lint = await helm(['lint', '--strict', CHART_DIR]);
    expect(lint.code, lint.stdout + lint.stderr).toBe(0);
    const bad = await helm(['lint', CHART_DIR, '--set', 'auth.unauthenticated=everyone']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/unauthenticated/);
  });

  it(
    'renders the defaults into valid Kubernetes objects for every app',
    { timeout: TIMEOUT },
    async () => {
      const objects = await render();
      validateAll(objects);
      const kinds = objects.map((o) => o.kind).sort();
      expect(kinds).toEqual(
        [
          'ConfigMap',
          'ConfigMap',
          'Deployment',
          'Deployment',
          'Deployment',
          'HorizontalPodAutoscaler',
          'PersistentVolumeClaim',
          'PersistentVolumeClaim',
          'PodDisruptionBudget',
          'PodDisruptionBudget',
          'PodDisruptionBudget',
          'Secret',
          'Service',
          'Service',
          'Service',
          'Service',
          'Service',
          'ServiceAccount',
          'StatefulSet',
        ].sort(),
      );

      const gateway = find(objects, 'Deployment', 'gateway');
      const worker = find(objects, 'StatefulSet', 'proxy-worker');
      const lockService = find(objects, 'Deployment', 'lock-service');
      expect(container(gateway).args.slice(0, 5)).toEqual([
        'gateway',
        '--port',
        '9417',
        '--ops-listen',
        '0.0.0.0:9420',
      ]);
      // /metrics and /stats: on the ops port, behind a ClusterIP Service of its own.
      expect(container(gateway).ports[1]).toEqual({
        name: 'ops',
        containerPort: 9420,
        protocol: 'TCP',
      });
      const opsService = objects.find(
        (o) => o.kind === 'Service' && o.metadata.name === 'rel-annex-p2phttp-gateway-ops',
      )!;
      expect(opsService.spec.type).toBe('ClusterIP');
      expect(opsService.spec.ports).toEqual([
        { name: 'ops', port: 9420, targetPort: 'ops', protocol: 'TCP' },
      ]);
      const apiService = objects.find(
        (o) => o.kind === 'Service' && o.metadata.name === 'rel-annex-p2phttp-gateway',
      )!;
      expect(apiService.spec.ports.map((p: { name: string }) => p.name)).toEqual(['http']);
      expect(container(worker).args).toEqual([
        'proxy-worker',
        '--directory',
        '/data/repos',
        '--jobs',
        '8',
        '--proxyconnections',
        '8',
        '--shards',
        '8',
        '--upload-idle',
        '60',
        '--data-port',
        '9418',
        '--advertise-url',
        'http://$(POD_IP):9418',
      ]);
      expect(container(worker).env[0]).toEqual({
        name: 'POD_IP',
        valueFrom: { fieldRef: { fieldPath: 'status.podIP' } },
      });
      expect(container(lockService).args).toEqual([
        'lock-service',
        '--directory',
        '/data/repos',
        '--health-port',
        '9419',
      ]);
      for (const [workload, port] of [
        [gateway, 9417],
        [worker, 9418],
        [lockService, 9419],
      ] as const) {
        const c = container(workload);
        expect(c.ports[0].containerPort).toBe(port);
        expect(c.livenessProbe.httpGet.path).toBe('/healthz');
        expect(c.readinessProbe.httpGet.path).toBe('/readyz');
        expect(c.livenessProbe.httpGet.port).toBe(c.ports[0].name);
        expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
        expect(workload.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
        expect(c.env.map((e: { name: string }) => e.name)).toContain('REDIS_URL');
      }
      // Redis keeps an append-only file on a claim of its own and never evicts.
      const redis = find(objects, 'Deployment', 'redis');
      const redisArgs = container(redis).args.join(' ');
      expect(redisArgs).toContain('--appendonly yes');
      expect(redisArgs).toContain('--appendfsync everysec');
      expect(redisArgs).toContain('--maxmemory-policy noeviction');
      const redisData = redis.spec.template.spec.volumes.find(
        (v: { name: string }) => v.name === 'data',
      );
      expect(redisData.persistentVolumeClaim.claimName).toBe('rel-annex-p2phttp-redis');
      // A fresh volume is writable for the apps' user.
      expect(gateway.spec.template.spec.securityContext.fsGroup).toBe(10001);
      // Workers and lock-service mount one claim, and stay on one node while it is ReadWriteOnce.
      const claims = objects.filter(
        (o) =>
          o.kind === 'PersistentVolumeClaim' &&
          o.metadata.labels?.['app.kubernetes.io/component'] !== 'redis',
      );
      expect(claims.map((c) => c.spec.accessModes)).toEqual([['ReadWriteOnce']]);
      for (const workload of [worker, lockService]) {
        const volumes = workload.spec.template.spec.volumes;
        const repositories = volumes.find((v: { name: string }) => v.name === 'repositories');
        expect(repositories.persistentVolumeClaim.claimName).toBe(claims[0]!.metadata.name);
        const affinity = workload.spec.template.spec.affinity.podAffinity;
        expect(affinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector).toEqual({
          matchLabels: worker.spec.selector.matchLabels,
        });
      }
      expect(gateway.spec.template.spec.volumes.map((v: { name: string }) => v.name)).toEqual([
        'home',
        'tmp',
      ]);
      const dashboard = objects.find((o) => o.metadata.labels?.['grafana_dashboard'] === '1');
      const shipped = await readFile(path.join(CHART_DIR, 'dashboards/annex-p2phttp.json'), 'utf8');
      expect(JSON.parse(dashboard!.data!['annex-p2phttp.json']!)).toEqual(JSON.parse(shipped));
      const secret = objects.find((o) => o.kind === 'Secret')!;
      expect(secret.stringData).toEqual({ 'redis-url': 'redis://rel-annex-p2phttp-redis:6379' });
    },
  );

  it(
    'renders TLS, users, an external Redis, an existing claim and ServiceMonitors',
    { timeout: TIMEOUT },
    async () => {
      const objects = await render([
        'gateway.tls.secretName=gateway-tls',
        'auth.overHttp=false',
        'auth.unauthenticated=readonly',
        'auth.users[0].name=alice',
        'auth.users[0].password=s3cret',
        'auth.users[0].permissions=appendonly',
        'redis.enabled=false',
        'redis.url=redis://:pw@redis.example:6379/2',
        'persistence.existingClaim=annex-repos',
        'metrics.serviceMonitor.enabled=true',
        'gateway.autoscaling.enabled=false',
      ]);
      validateAll(objects);
      expect(objects.filter((o) => o.kind === 'ServiceMonitor')).toHaveLength(3);
      expect(objects.some((o) => o.kind === 'PersistentVolumeClaim')).toBe(false);
      expect(objects.some((o) => o.kind === 'HorizontalPodAutoscaler')).toBe(false);
      expect(
        objects.some((o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'redis'),
      ).toBe(false);
      const gateway = find(objects, 'Deployment', 'gateway');
      expect(gateway.spec.replicas).toBe(2);
      const c = container(gateway);
      expect(c.args).toEqual([
        'gateway',
        '--port',
        '9417',
        '--ops-listen',
        '0.0.0.0:9420',
        '--unauth-readonly',
        '--authenv',
        '--certfile',
        '/etc/annex-p2phttp/tls/tls.crt',
        '--privatekeyfile',
        '/etc/annex-p2phttp/tls/tls.key',
        '--upload-idle',
        '60',
      ]);
      expect(c.readinessProbe.httpGet.scheme).toBe('HTTPS');
      const secret = objects.find((o) => o.kind === 'Secret')!;
      expect(secret.stringData).toEqual({
        'redis-url': 'redis://:pw@redis.example:6379/2',
        GIT_ANNEX_P2PHTTP_PASSWORD_alice: 's3cret',
        GIT_ANNEX_P2PHTTP_PERMISSIONS_alice: 'appendonly',
      });
      expect(c.envFrom).toEqual([{ secretRef: { name: secret.metadata.name } }]);
      const worker = find(objects, 'StatefulSet', 'proxy-worker');
      expect(worker.spec.template.spec.affinity).toBeUndefined();
      const monitor = find(objects, 'ServiceMonitor', 'gateway');
      expect(monitor.spec.endpoints[0]).toMatchObject({
        port: 'ops',
        path: '/metrics',
        scheme: 'http',
      });
      expect(monitor.spec.selector.matchLabels['annex-p2phttp/endpoint']).toBe('ops');
    },
  );

  it(
    'renders a policy (inline, or a ConfigMap or Secret of yours), an auth hook and a path prefix',
    { timeout: TIMEOUT },
    async () => {
      const policyText = 'repositories:\n  - path: "public/**"\n    anonymous: readonly\n';
      const objects = await render([
        `auth.policy.inline=${policyText}`,
        'auth.hook.url=http://forge.forge.svc:3000/api/annex/auth',
        'auth.hook.cacheSeconds=30',
        'gateway.pathPrefix=/annex',
        'uploads.idleSeconds=15',
        'uploads.trustForwardedFor=true',
        'auth.users[0].name=alice',
        'auth.users[0].password=s3cret',
      ]);
      validateAll(objects);
      const gateway = find(objects, 'Deployment', 'gateway');
      const c = container(gateway);
      expect(c.args).toEqual([
        'gateway',
        '--port',
        '9417',
        '--ops-listen',
        '0.0.0.0:9420',
        '--authenv-http',
        '--policy',
        '/etc/annex-p2phttp/policy/policy.yaml',
        '--auth-hook',
        'http://forge.forge.svc:3000/api/annex/auth',
        '--auth-hook-cache',
        '30',
        '--path-prefix',
        '/annex',
        '--upload-idle',
        '15',
        '--trust-forwarded-for',
      ]);
      expect(container(find(objects, 'StatefulSet', 'proxy-worker')).args).toContain('15');
      const mount = c.volumeMounts.find((m: { name: string }) => m.name === 'policy');
      expect(mount).toEqual({
        name: 'policy',
        mountPath: '/etc/annex-p2phttp/policy',
        readOnly: true,
      });
      const volume = gateway.spec.template.spec.volumes.find(
        (v: { name: string }) => v.name === 'policy',
      );
      expect(volume).toEqual({ name: 'policy', configMap: { name: 'rel-annex-p2phttp-policy' } });
      const configMap = objects.find((o) => o.metadata.name === 'rel-annex-p2phttp-policy')!;
      // The file the gateway reads is the policy given, and the gateway accepts it.
      const file = configMap.data!['policy.yaml']!;
      expect(parsePolicy(file, 'policy.yaml').ruleFor('public/a')?.anonymous).toBe('readonly');
      expect(parseYaml(file)).toEqual(parseYaml(policyText));
      // The workers and the lock-service take none of it.
      for (const [kind, component] of [
        ['StatefulSet', 'proxy-worker'],
        ['Deployment', 'lock-service'],
      ] as const) {
        expect(container(find(objects, kind, component)).args.join(' ')).not.toMatch(/policy|hook/);
      }

      for (const [source, expected] of [
        ['existingSecret', { secret: { secretName: 'forge-policy' } }],
        ['existingConfigMap', { configMap: { name: 'forge-policy' } }],
      ] as const) {
        const own = await render([`auth.policy.${source}=forge-policy`, 'auth.policy.key=p.yml']);
        validateAll(own);
        const g = find(own, 'Deployment', 'gateway');
        expect(container(g).args).toContain('/etc/annex-p2phttp/policy/p.yml');
        expect(
          g.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'policy'),
        ).toEqual({ name: 'policy', ...expected });
        expect(own.some((o) => o.metadata.name === 'rel-annex-p2phttp-policy')).toBe(false);
      }
    },
  );

  it('passes the workers their shards and group', { timeout: TIMEOUT }, async () => {
    const objects = await render(['proxyWorker.shards=16', 'proxyWorker.workerGroup=site-a']);
    const args = container(find(objects, 'StatefulSet', 'proxy-worker')).args as string[];
    expect(args.slice(args.indexOf('--shards'), args.indexOf('--shards') + 2)).toEqual([
      '--shards',
      '16',
    ]);
    expect(args.slice(args.indexOf('--worker-group'), args.indexOf('--worker-group') + 2)).toEqual([
      '--worker-group',
      'site-a',
    ]);
  });

  it('points the apps at an external Sentinel set', { timeout: TIMEOUT }, async () => {
    const objects = await render([
      'redis.enabled=false',
      'redis.sentinel.hosts[0]=sentinel-0.sentinel:26379',
      'redis.sentinel.hosts[1]=sentinel-1.sentinel:26379',
      'redis.sentinel.hosts[2]=[fd00::3]',
      'redis.sentinel.masterName=my master',
      'redis.sentinel.password=p@ss:w/rd',
      'redis.sentinel.sentinelPassword=s&p',
      'redis.sentinel.db=2',
    ]);
    validateAll(objects);
    expect(
      objects.some((o) => o.metadata.labels?.['app.kubernetes.io/component'] === 'redis'),
    ).toBe(false);
    const secret = objects.find((o) => o.kind === 'Secret')!;
    const url = (secret.stringData as Record<string, string>)['redis-url']!;
    // What the apps will read back from it.
    expect(parseRedisUrl(url)).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 'sentinel-0.sentinel', port: 26379 },
        { host: 'sentinel-1.sentinel', port: 26379 },
        { host: 'fd00::3', port: 26379 },
      ],
      masterName: 'my master',
      password: 'p@ss:w/rd',
      sentinelPassword: 's&p',
      db: 2,
      tls: false,
    });
    const tls = await render([
      'redis.enabled=false',
      'redis.sentinel.hosts[0]=s1',
      'redis.sentinel.masterName=m',
      'redis.sentinel.tls=true',
    ]);
    const tlsSecret = tls.find((o) => o.kind === 'Secret')!;
    expect((tlsSecret.stringData as Record<string, string>)['redis-url']).toBe(
      'rediss+sentinel://s1/m',
    );
    const url2 = await render(['redis.enabled=false', 'redis.url=redis+sentinel://a\\,b/m']);
    expect(
      (url2.find((o) => o.kind === 'Secret')!.stringData as Record<string, string>)['redis-url'],
    ).toBe('redis+sentinel://a,b/m');
  });

  it('refuses values that do not fit together', { timeout: TIMEOUT }, async () => {
    const noRedis = await helm(['template', 'rel', CHART_DIR, '--set', 'redis.enabled=false']);
    expect(noRedis.code).not.toBe(0);
    expect(noRedis.stderr).toMatch(/set redis.url, redis.sentinel or redis.existingSecret/);
    for (const [sets, message] of [
      [['redis.sentinel.hosts[0]=s1', 'redis.sentinel.masterName=m'], /set redis.enabled=false/],
      [['redis.enabled=false', 'redis.sentinel.hosts[0]=s1'], /masterName names the master/],
      [
        [
          'redis.enabled=false',
          'redis.sentinel.hosts[0]=s1',
          'redis.sentinel.masterName=m',
          'redis.url=redis://x',
        ],
        /set one of redis.url, redis.sentinel and redis.existingSecret/,
      ],
    ] as const) {
      const refused = await helm([
        'template',
        'rel',
        CHART_DIR,
        ...sets.flatMap((v) => ['--set', v]),
      ]);
      expect(refused.code, sets.join(' ')).not.toBe(0);
      expect(refused.stderr).toMatch(message);
    }
    const loginOverHttp = await helm([
      'template',
      'rel',
      CHART_DIR,
      '--set',
      'auth.overHttp=false',
      '--set',
      'auth.existingSecret=users',
    ]);
    expect(loginOverHttp.code).not.toBe(0);
    expect(loginOverHttp.stderr).toMatch(/only over HTTPS/);
    const policyAndFlags = await helm([
      'template',
      'rel',
      CHART_DIR,
      '--set',
      'auth.policy.existingSecret=p',
      '--set',
      'auth.unauthenticated=readonly',
    ]);
    expect(policyAndFlags.code).not.toBe(0);
    expect(policyAndFlags.stderr).toMatch(/leave auth.unauthenticated none/);
    const twoPolicies = await helm([
      'template',
      'rel',
      CHART_DIR,
      '--set',
      'auth.policy.existingSecret=p',
      '--set',
      'auth.policy.existingConfigMap=q',
    ]);
    expect(twoPolicies.code).not.toBe(0);
    expect(twoPolicies.stderr).toMatch(/set one of inline, existingConfigMap and existingSecret/);
    const badHook = await helm(['template', 'rel', CHART_DIR, '--set', 'auth.hook.url=forge:3000']);
    expect(badHook.code).not.toBe(0);
  });
});
