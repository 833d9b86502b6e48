// The Node server-side OFREP provider, @openfeature/ofrep-provider 0.1.3 on
// @openfeature/ofrep-core 0.1.x with @openfeature/server-sdk (one request per
// evaluation, POST /ofrep/v1/evaluate/flags/{key}). Driven by
// tests/it/clients.rs; reads the spec of ofrep-web.mjs on stdin and prints one
// JSON line: {client, cases: {name: {flag: {value, variant, reason, errorCode}}},
// serverOnly, unknown}.
//
// The server key (X-API-Key) evaluates every flag with each case's context
// passed per call; an unknown flag must come back as the default with
// FLAG_NOT_FOUND. A provider bound to the domain 'public' with the public key
// asks for the server-only flag, which a public key must not see.
import { load, version, readSpec, defaultFor, detailsFn, summary, finish } from './common.mjs';

const { OpenFeature } = load('@openfeature/server-sdk');
const { OFREPProvider } = load('@openfeature/ofrep-provider');

const spec = readSpec();

await OpenFeature.setProviderAndWait(
  new OFREPProvider({ baseUrl: spec.baseUrl, headers: { 'X-API-Key': spec.serverKey } }),
);
await OpenFeature.setProviderAndWait(
  'public',
  new OFREPProvider({ baseUrl: spec.baseUrl, headers: { 'X-API-Key': spec.publicKey } }),
);
const client = OpenFeature.getClient();

const cases = {};
for (const c of spec.cases) {
  const out = {};
  for (const [key, type] of Object.entries(spec.allFlags)) {
    out[key] = summary(await detailsFn(client, type)(key, defaultFor(type), c.context));
  }
  cases[c.name] = out;
}

const ctx = spec.cases[0].context;
const unknown = summary(await client.getBooleanDetails(spec.unknownFlag, false, ctx));
const serverOnly = summary(
  await OpenFeature.getClient('public').getObjectDetails(spec.serverOnlyFlag, defaultFor('object'), ctx),
);

await OpenFeature.close();
finish({
  client: `@openfeature/ofrep-provider@${version('@openfeature/ofrep-provider')} + @openfeature/ofrep-core@${version('@openfeature/ofrep-core')} + @openfeature/server-sdk@${version('@openfeature/server-sdk')}`,
  cases,
  serverOnly,
  unknown,
});
