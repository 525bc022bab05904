// A real OpenID Connect provider for the sign-in tests, on loopback only.
//
// One confidential client that authenticates at the token endpoint with client_secret_basic and
// must use PKCE. Sign-in is oidc-provider's development form: any password, and the login typed
// is the account's `sub`. The accounts' claims are read from ACCOUNTS_FILE at every look-up, so a
// test can change someone's email between two sign-ins. Consent is skipped, as it is for a
// company's own applications.
//
// Environment: PORT, HOST (the issuer's host name), CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS and
// POST_LOGOUT_REDIRECT_URIS (comma-separated), ACCOUNTS_FILE (JSON: {"<sub>": {claims}}).
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
};
const list = (name) => env(name).split(',').map((item) => item.trim()).filter(Boolean);

const port = Number(env('PORT'));
const host = env('HOST');
const accountsFile = env('ACCOUNTS_FILE');
const issuer = `http://${host}:${port}`;

function readAccounts() {
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

const configuration = {
  clients: [
    {
      client_id: env('CLIENT_ID'),
      client_secret: env('CLIENT_SECRET'),
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: list('REDIRECT_URIS'),
      post_logout_redirect_uris: list('POST_LOGOUT_REDIRECT_URIS'),
    },
  ],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'groups'],
  },
  async findAccount(ctx, sub) {
    const claims = readAccounts()[sub];
    if (!claims) {
      return undefined;
    }
    return {
      accountId: sub,
      async claims() {
        return { ...claims, sub };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: client.clientId,
      accountId: session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: ['test-provider-cookie-key-not-a-secret'] },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
};

const provider = new Provider(issuer, configuration);
provider.listen(port, '127.0.0.1', () => {
  console.log(`provider ${issuer} ready`);
});
