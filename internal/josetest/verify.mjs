// A relying party for tests: verifies Portcullis tokens with jose's
// createRemoteJWKSet, which caches the JWKS (cacheMaxAge) and refetches on an
// unknown kid at most once per cooldownDuration, as real verifiers do.
//
//   node verify.mjs JWKS_URL ISSUER AUDIENCE CACHE_MAX_AGE_MS
//
// stdin, one command a line; stdout, one answer a line:
//   verify TOKEN  ->  ok KID | fail CODE MESSAGE
//   kids          ->  kids KID,KID,...   (the key ids in the cached JWKS)
import { createInterface } from "node:readline";
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksURL, issuer, audience, maxAge] = process.argv.slice(2);
const JWKS = createRemoteJWKSet(new URL(jwksURL), {
  cacheMaxAge: Number(maxAge),
  cooldownDuration: 30000, // jose's default
});

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  const [cmd, arg] = line.split(" ");
  if (cmd === "kids") {
    const set = JWKS.jwks();
    console.log("kids " + (set ? set.keys.map((k) => k.kid).join(",") : ""));
    continue;
  }
  if (cmd !== "verify") {
    console.log("fail usage unknown command");
    continue;
  }
  try {
    const { protectedHeader } = await jwtVerify(arg, JWKS, {
      issuer,
      audience,
      typ: "at+jwt",
    });
    console.log("ok " + protectedHeader.kid);
  } catch (err) {
    console.log("fail " + (err.code || "ERR") + " " + String(err.message).replace(/\n/g, " "));
  }
}
