// Shared by the Node client scripts of tests/it/clients.rs.
//
// The packages live in the npm prefix that scripts/clients.sh installs
// (.tools/clients/npm, passed as FLAGBELT_TEST_CLIENTS_NPM), not next to these
// scripts, so they are loaded through a `require` rooted there. Everything is
// loaded through that one `require` (CommonJS builds), so a provider and the
// SDK it registers with are the same module instances.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const prefix = process.env.FLAGBELT_TEST_CLIENTS_NPM;
if (!prefix) {
  throw new Error('FLAGBELT_TEST_CLIENTS_NPM is not set (eval "$(scripts/clients.sh install)")');
}

/** `require` resolving from the installed node_modules. */
export const load = createRequire(path.join(prefix, 'package.json'));

/** The installed version of a package (read from its package.json). */
export function version(name) {
  return JSON.parse(readFileSync(path.join(prefix, 'node_modules', name, 'package.json'), 'utf8'))
    .version;
}

/** The test's spec: one JSON document on stdin. */
export function readSpec() {
  return JSON.parse(readFileSync(0, 'utf8'));
}

/** A default of the flag's type that no demo flag serves. */
export function defaultFor(type) {
  switch (type) {
    case 'boolean':
      return false;
    case 'string':
      return '__default__';
    case 'integer':
    case 'float':
      return -1.5;
    case 'object':
      return { __default__: true };
    default:
      throw new Error(`unknown flag type ${type}`);
  }
}

/** An OpenFeature client's typed `get*Details` for a flag type. */
export function detailsFn(client, type) {
  switch (type) {
    case 'boolean':
      return client.getBooleanDetails.bind(client);
    case 'string':
      return client.getStringDetails.bind(client);
    case 'integer':
    case 'float':
      return client.getNumberDetails.bind(client);
    case 'object':
      return client.getObjectDetails.bind(client);
    default:
      throw new Error(`unknown flag type ${type}`);
  }
}

/** The parts of evaluation details the test compares. */
export function summary(details) {
  return {
    value: details.value,
    variant: details.variant ?? null,
    reason: details.reason ?? null,
    errorCode: details.errorCode ?? null,
  };
}

/** Prints the one JSON line the test reads, then exits (timers may remain). */
export function finish(result) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}
