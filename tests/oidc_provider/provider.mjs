// An independent OpenID provider for CDX's tests: the certified `oidc-provider` package, with its
// built-in development login pages (any login and password), authorization code + PKCE, device
// authorization and RP-initiated logout. Everything comes from a JSON settings file (argv[2]):
//   { "issuer", "port", "keys": [private JWKs, the first signs], "clients": [...],
//     "accounts": { "<login>": { claims } } }
// A login not in "accounts" is a citizen whose national id is the login itself.
// It prints "listening <issuer>" once it accepts connections.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = settings.accounts || {};

const provider = new Provider(settings.issuer, {
  clients: settings.clients,
  jwks: { keys: settings.keys },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: `acct-${id}`, ...(accounts[id] || { national_id: id }) }),
  }),
  claims: { openid: ['sub'], profile: ['name'], cdx: ['national_id', 'cdx_roles'] },
  scopes: ['openid', 'profile', 'cdx'],
  conformIdTokenClaims: false, // scope claims go into the ID token (the token CDX relays)
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256', 'EdDSA'] },
  ttl: {
    IdToken: settings.idTokenTtl || 3600,
    AccessToken: 600,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  cookies: { keys: ['cdx-test-cookie-key-0123456789abcdef'] },
  renderError: async (ctx, out) => {
    ctx.type = 'text/plain';
    ctx.body = `${out.error}: ${out.error_description || ''}`;
  },
});
provider.proxy = false;

const server = provider.listen(settings.port, '127.0.0.1', () => {
  console.log(`listening ${settings.issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
