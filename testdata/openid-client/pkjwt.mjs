// Client credentials grant with private_key_jwt client authentication
// (RFC 7523 §2.2), performed by the npm openid-client library against a
// running Portcullis. Inputs come from the environment:
//   ISSUER      issuer URL (RFC 8414 metadata is discovered from it)
//   CLIENT_ID   the client id
//   CLIENT_JWK  the client's private key as a JWK (JSON), with kid
//   SCOPE       optional scope to request
//   REPEAT      how many tokens to request (each with a fresh assertion)
// Prints one JSON line per token response; exits 1 with the error on stderr.
import * as client from 'openid-client';

const jwk = JSON.parse(process.env.CLIENT_JWK);
const key = await crypto.subtle.importKey(
  'jwk', jwk, { name: 'ECDSA', namedCurve: jwk.crv }, false, ['sign']);

try {
  const config = await client.discovery(
    new URL(process.env.ISSUER),
    process.env.CLIENT_ID,
    { token_endpoint_auth_method: 'private_key_jwt' },
    client.PrivateKeyJwt({ key, kid: jwk.kid }),
    { algorithm: 'oauth2', execute: [client.allowInsecureRequests] },
  );
  const repeat = Number(process.env.REPEAT || '1');
  for (let i = 0; i < repeat; i++) {
    const params = process.env.SCOPE ? { scope: process.env.SCOPE } : {};
    const tokens = await client.clientCredentialsGrant(config, params);
    console.log(JSON.stringify({
      access_token: tokens.access_token, token_type: tokens.token_type,
      scope: tokens.scope, expires_in: tokens.expires_in,
    }));
  }
} catch (err) {
  console.error(JSON.stringify({ name: err.name, code: err.code, error: err.error, message: err.message }));
  process.exit(1);
}
