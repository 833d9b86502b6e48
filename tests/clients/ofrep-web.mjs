// The browser OFREP provider, @openfeature/ofrep-web-provider with
// @openfeature/web-sdk, under plain Node (it guards its DOM and localStorage
// use). Driven by tests/it/clients.rs; reads a spec on stdin:
//   {baseUrl, publicKey, serverKey, cases: [{name, context}], clientFlags: {key: type},
//    allFlags: {key: type}, serverOnlyFlag, unknownFlag, pollIntervalMs, minPolls}
// and prints one JSON line:
//   {client, cases: {name: {flag: {value, variant, reason, errorCode}}},
//    serverView: {flag: ...}, serverOnly: ..., unknown: ..., requests: [...]}
//
// With the public key (Authorization: Bearer, as a browser app sends it) it
// evaluates every client flag for each context in turn (OpenFeature.setContext),
// polling (changeDetection 'polling', a short pollInterval) in between; every
// bulk request goes through a recording fetch, so the test sees which carried
// If-None-Match and what status came back. A second provider, bound to the
// domain 'server-view' with the server key (X-API-Key), reads every flag,
// including the object-valued server-only one, through the same bulk route.
import { load, version, readSpec, defaultFor, detailsFn, summary, finish } from './common.mjs';

const { OpenFeature } = load('@openfeature/web-sdk');
const { OFREPWebProvider } = load('@openfeature/ofrep-web-provider');

const spec = readSpec();
const requests = [];

/** fetch, recording what each request sent and got (never the key). */
async function recordingFetch(input, init) {
  const req = input instanceof Request ? input : new Request(input, init);
  const entry = {
    method: req.method,
    path: new URL(req.url).pathname,
    ifNoneMatch: req.headers.get('if-none-match'),
    body: null,
    status: null,
    etag: null,
  };
  try {
    entry.body = JSON.parse(await req.clone().text());
  } catch {
    // not JSON: left null
  }
  requests.push(entry);
  const res = await globalThis.fetch(input, init);
  entry.status = res.status;
  entry.etag = res.headers.get('etag');
  return res;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function evaluate(client, flags) {
  const out = {};
  for (const [key, type] of Object.entries(flags)) {
    out[key] = summary(detailsFn(client, type)(key, defaultFor(type)));
  }
  return out;
}

const [first, ...rest] = spec.cases;
await OpenFeature.setContext(first.context);
await OpenFeature.setProviderAndWait(
  new OFREPWebProvider({
    baseUrl: spec.baseUrl,
    headers: [['Authorization', `Bearer ${spec.publicKey}`]],
    pollInterval: spec.pollIntervalMs,
    changeDetection: 'polling',
    cacheMode: 'disabled',
    fetchImplementation: recordingFetch,
  }),
);
const client = OpenFeature.getClient();

const cases = {};
cases[first.name] = evaluate(client, spec.clientFlags);

// Let it poll: wait (bounded) for minPolls answered re-polls.
const deadline = Date.now() + 10_000;
while (requests.filter((r) => r.ifNoneMatch !== null && r.status !== null).length < spec.minPolls) {
  if (Date.now() > deadline) break;
  await sleep(50);
}
const pollsBeforeContextChange = requests.length;

for (const c of rest) {
  await OpenFeature.setContext(c.context);
  cases[c.name] = evaluate(client, spec.clientFlags);
}

const serverOnly = summary(client.getObjectDetails(spec.serverOnlyFlag, defaultFor('object')));
const unknown = summary(client.getBooleanDetails(spec.unknownFlag, false));

// The same bulk route with the server key: every flag, object values included.
await OpenFeature.setContext('server-view', first.context);
await OpenFeature.setProviderAndWait(
  'server-view',
  new OFREPWebProvider({
    baseUrl: spec.baseUrl,
    headers: [['X-API-Key', spec.serverKey]],
    changeDetection: 'none',
    cacheMode: 'disabled',
  }),
);
const serverView = evaluate(OpenFeature.getClient('server-view'), spec.allFlags);

await OpenFeature.close();
finish({
  client: `@openfeature/ofrep-web-provider@${version('@openfeature/ofrep-web-provider')} + @openfeature/web-sdk@${version('@openfeature/web-sdk')}`,
  cases,
  serverOnly,
  unknown,
  serverView,
  pollsBeforeContextChange,
  requests,
});
