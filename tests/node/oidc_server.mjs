// oidc-provider (a certified OAuth 2.0 / OpenID Connect server, from npm) on 127.0.0.1 for
// the tests (tests/oidc_server.py starts it): a client with the client credentials grant, whose
// opaque access tokens for one resource live --ttl seconds, and a resource server client that
// checks them by token introspection (RFC 7662): the demo API, as a real API would.
//
// It listens on a free port, then prints one JSON line: the issuer and its endpoints.
// GET /_stats answers how many tokens it issued and how many introspections it answered.
//
//   CLIENT_SECRET=... RESOURCE_SERVER_SECRET=... node oidc_server.mjs --ttl 2

import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: options } = parseArgs({
  options: {
    ttl: { type: 'string', default: '60' },
    'client-id': { type: 'string', default: 'tui-connector' },
    'resource-server-id': { type: 'string', default: 'demo-api' },
    resource: { type: 'string', default: 'urn:tui-connector:demo' },
    scope: { type: 'string', default: 'items:read' },
  },
});
const ttl = Number(options.ttl);
if (!Number.isInteger(ttl) || ttl < 1) {
  throw new Error(`--ttl must be a whole number of seconds, at least 1 (got ${options.ttl})`);
}
const secret = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
};

const server = http.createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: options['client-id'],
      client_secret: secret('CLIENT_SECRET'),
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: options.scope,
    },
    {
      client_id: options['resource-server-id'],
      client_secret: secret('RESOURCE_SERVER_SECRET'),
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  scopes: [options.scope],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // A token request must name the resource (token_params: {resource: ...}).
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== options.resource) throw new errors.InvalidTarget();
        return {
          scope: options.scope,
          audience: resource,
          accessTokenTTL: ttl,
          accessTokenFormat: 'opaque',
        };
      },
    },
  },
  ttl: { ClientCredentials: () => ttl },
  cookies: { keys: ['tui-connector-tests-only'] },
});

const stats = { tokens_issued: 0, introspections: 0, token_errors: 0 };
provider.on('grant.success', () => { stats.tokens_issued += 1; });
provider.on('grant.error', () => { stats.token_errors += 1; });
provider.on('introspection.error', () => {});
provider.on('server_error', (_ctx, error) => { console.error(error); });
const callback = provider.callback();
server.on('request', (request, response) => {
  if (request.method === 'GET' && request.url === '/_stats') {
    response.setHeader('Content-Type', 'application/json');
    response.end(JSON.stringify(stats));
    return;
  }
  if (request.url.startsWith('/token/introspection')) stats.introspections += 1;
  callback(request, response);
});

const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

console.log(JSON.stringify({
  issuer,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  resource: options.resource,
  scope: options.scope,
  client_id: options['client-id'],
  resource_server_id: options['resource-server-id'],
}));
