#!/usr/bin/env node
/**
 * Rewrites the output of `docker-compose config` (docker-compose.yml as Compose resolved it) for
 * a Docker engine without a bridge: every service on the host's network, bound to 127.0.0.1 on
 * the free ports given, published ports dropped (they mean nothing with host networking and
 * docker-compose 1.29 cannot drop them through an override file), builds on the host network,
 * and only the services named kept (the monitoring images are not made locally).
 *
 *   docker-compose config | node host-compose.mjs PORTS_JSON SERVICE... > compose.host.yml
 *
 * PORTS_JSON: {"api":N,"data":N,"health":N,"ops":N,"redis":N}.
 */
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { parse, stringify } from 'yaml';

const [portsJson, ...keep] = process.argv.slice(2);
if (!portsJson || keep.length === 0) {
  process.stderr.write('usage: host-compose.mjs PORTS_JSON SERVICE...\n');
  process.exit(2);
}
const ports = JSON.parse(portsJson);
// YAML 1.1 both ways, as docker-compose (PyYAML) reads and writes it: 'no' and 'yes' stay strings.
const config = parse(readFileSync(0, 'utf8'), { version: '1.1' });
const redisUrl = `redis://127.0.0.1:${ports.redis}`;

/** Replaces the value after `name` in an argument list (the option must be there). */
function setOption(args, name, value) {
  const at = args.indexOf(name);
  if (at < 0 || at + 1 >= args.length) {
    throw new Error(`${name} not found in ${JSON.stringify(args)}`);
  }
  args[at + 1] = String(value);
}

const services = {};
for (const name of keep) {
  const service = config.services[name];
  if (!service) {
    throw new Error(`service ${name} is not in the compose file`);
  }
  delete service.ports;
  delete service.networks;
  service.network_mode = 'host';
  if (service.build) {
    service.build = { ...service.build, network: 'host' };
  }
  if (service.environment?.REDIS_URL) {
    service.environment.REDIS_URL = redisUrl;
  }
  const command = service.command;
  switch (name) {
    case 'redis':
      command.push('--port', String(ports.redis), '--bind', '127.0.0.1');
      service.healthcheck.test = ['CMD', 'redis-cli', '-p', String(ports.redis), 'ping'];
      break;
    case 'gateway':
      setOption(command, '--port', ports.api);
      setOption(command, '--ops-listen', `127.0.0.1:${ports.ops}`);
      command.push('--bind', '127.0.0.1');
      break;
    case 'proxy-worker':
      setOption(command, '--data-port', ports.data);
      setOption(command, '--advertise-url', `http://127.0.0.1:${ports.data}`);
      command.push('--bind', '127.0.0.1');
      break;
    case 'lock-service':
      setOption(command, '--health-port', ports.health);
      command.push('--bind', '127.0.0.1');
      break;
    default:
      break;
  }
  const dependsOn = service.depends_on;
  if (dependsOn && !Array.isArray(dependsOn)) {
    for (const dependency of Object.keys(dependsOn)) {
      if (!keep.includes(dependency)) {
        delete dependsOn[dependency];
      }
    }
  }
  services[name] = service;
}
config.services = services;
delete config.networks;
process.stdout.write(stringify(config, { version: '1.1' }));
