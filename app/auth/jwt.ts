import {
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type FetchImplementation,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  type JWTVerifyResult,
} from 'jose';
import type { Config, JwtConfig } from '../env.js';
import { ApiError } from '../errors.js';

/** Who a verified token says the caller is: `issuer` is its `iss` ('' without one). */
export interface JwtIdentity {
  issuer: string;
  subject: string;
  name: string | null;
}

export interface JwtVerifier {
  /** The token's identity, or an ApiError: 401 invalid_token, or 503 auth_unavailable when the key set cannot be had. */
  verify(token: string): Promise<JwtIdentity>;
}

export interface JwtVerifierOptions {
  /** The clock `exp` and `nbf` are checked against (tests); the system clock by default. */
  now?: () => Date;
}

/** Longer tokens are refused unread (Node's 16 KiB header limit would stop most of them anyway). */
export const MAX_JWT_LENGTH = 16_384;
/** OpenID Connect caps `sub` at 255 ASCII characters; the same here, whatever the issuer. */
const MAX_SUBJECT_LENGTH = 255;
const MAX_NAME_LENGTH = 200;
/** A key set document larger than this is refused before it is parsed (real ones are a few KiB). */
const MAX_JWKS_BYTES = 512 * 1024;
/** What a 503 tells the client to wait: the key set is fetched again on the next token after it. */
const RETRY_AFTER_SEC = '5';

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Whether a bearer token has a JWT's shape: three base64url parts (the last empty for
 * `alg: none`, so that such a token reaches the verifier and is refused there, by name).
 */
export const looksLikeJwt = (token: string): boolean => token.length <= MAX_JWT_LENGTH && COMPACT_JWS.test(token);

/** Null when JWT sign-in is off (neither AUTH_JWT_SECRET nor AUTH_JWKS_URL is set). */
export function createJwtVerifier(auth: Config['auth'], options: JwtVerifierOptions = {}): JwtVerifier | null {
  const config = auth.jwt;
  if (!config) return null;
  // The algorithms follow from the kind of key, never from the token: an HS256 token is refused
  // against a key set before any key is looked at (HS/RS confusion), and `none` always.
  const checks: JWTVerifyOptions = {
    algorithms: config.algorithms,
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance: config.clockToleranceSec,
    requiredClaims: ['sub'],
  };
  let verifyJwt: (token: string, checks: JWTVerifyOptions) => Promise<JWTVerifyResult>;
  if (config.kind === 'secret') {
    const secret = new TextEncoder().encode(config.secret);
    verifyJwt = (token, checks) => jwtVerify(token, secret, checks);
  } else {
    const keys = remoteKeySet(config);
    verifyJwt = (token, checks) => jwtVerify(token, keys, checks);
  }

  return {
    async verify(token) {
      if (token.length > MAX_JWT_LENGTH) throw invalidToken(`The token is longer than ${MAX_JWT_LENGTH} characters.`);
      let payload;
      try {
        ({ payload } = await verifyJwt(token, { ...checks, currentDate: options.now?.() }));
      } catch (err) {
        throw toAuthError(err, token, config);
      }
      const { sub, iss, name } = payload;
      if (typeof sub !== 'string' || !sub || sub.length > MAX_SUBJECT_LENGTH) {
        throw invalidToken(`The token's subject (sub) must be a string of 1 to ${MAX_SUBJECT_LENGTH} characters.`);
      }
      if (iss !== undefined && typeof iss !== 'string') throw invalidToken("The token's issuer (iss) is not a string.");
      return { issuer: iss ?? '', subject: sub, name: displayName(name) };
    },
  };
}

const displayName = (name: unknown): string | null =>
  // By code points, so the cut never splits a character in two.
  typeof name === 'string' && name.trim() ? Array.from(name.trim()).slice(0, MAX_NAME_LENGTH).join('') : null;

/**
 * The provider's keys, fetched on the first token, again after jose's cache age (10 min) or
 * when a token names an unknown `kid` (at most every `cooldownMs`). Anything that goes wrong
 * getting them is the provider's side, not the token's: it becomes KeySetUnavailable (503).
 */
function remoteKeySet(config: Extract<JwtConfig, { kind: 'jwks' }>): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(new URL(config.url), {
    cooldownDuration: config.cooldownMs,
    timeoutDuration: config.timeoutMs,
    [customFetch]: boundedFetch,
  });
  return async (header, token) => {
    let key;
    try {
      key = await remote(header, token);
    } catch (err) {
      // The token's fault: it names a key the set lacks (after a refetch, cooldown allowing).
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
      throw new KeySetUnavailable(unavailableReason(err, config), { cause: err });
    }
    // jose refuses these itself, but with a TypeError thrown after this function: said here in words.
    const modulus = (key.algorithm as Partial<RsaHashedKeyAlgorithm>).modulusLength;
    if (typeof modulus === 'number' && modulus < 2048) {
      throw new KeySetUnavailable(`has an RSA key of ${modulus} bits for this token; at least 2048 are required`);
    }
    return key;
  };
}

/** fetch, refusing a key set document larger than MAX_JWKS_BYTES instead of reading it all. */
const boundedFetch: FetchImplementation = async (url, init) => {
  const res = await fetch(url, init);
  // jose reads only a 200's body: any other status is refused without it.
  if (res.status !== 200 || !res.body) {
    await res.body?.cancel();
    return res;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_JWKS_BYTES) {
      await reader.cancel();
      throw new KeySetTooLarge();
    }
    chunks.push(value);
  }
  return new Response(Buffer.concat(chunks), { status: res.status, statusText: res.statusText, headers: res.headers });
};

class KeySetTooLarge extends Error {
  override name = 'KeySetTooLarge';
}

class KeySetUnavailable extends Error {
  override name = 'KeySetUnavailable';
}

/** What went wrong fetching or reading the key set, as jose reports it (see jose's jwks/remote.js). */
function unavailableReason(err: unknown, config: Extract<JwtConfig, { kind: 'jwks' }>): string {
  // AbortSignal.timeout fired, before the headers or while reading the body.
  if (err instanceof errors.JWKSTimeout) return `did not answer within ${config.timeoutMs} ms (AUTH_JWKS_TIMEOUT_MS)`;
  if (err instanceof KeySetTooLarge) return `answered with more than ${MAX_JWKS_BYTES} bytes`;
  // The document is JSON but not {keys: [objects]}, or holds a private key.
  if (err instanceof errors.JWKSInvalid) return 'answered with something that is not a JSON Web Key Set';
  // jose's plain JOSEError: any status but 200 (redirects are not followed), or a body that is not JSON.
  if (err instanceof errors.JOSEError && err.code === 'ERR_JOSE_GENERIC') {
    return /200/.test(err.message) ? 'answered with an HTTP status other than 200' : 'answered with a body that is not JSON';
  }
  // undici's "fetch failed" (refused, reset, DNS): a TypeError whose cause says which.
  if (err instanceof TypeError && err.message === 'fetch failed') return 'could not be reached';
  // jose could not import the key the token names (a JWK it cannot use).
  return 'has a key this server cannot use for this token';
}

const invalidToken = (message: string) => new ApiError(401, 'authentication_error', message, 'invalid_token');

/** jose's errors (util/errors.js) as ApiErrors whose message says what was wrong, never what the token was. */
function toAuthError(err: unknown, token: string, config: JwtConfig): unknown {
  if (err instanceof KeySetUnavailable) {
    return new ApiError(
      503,
      'server_error',
      `Signing in with a token is unavailable for now: the identity provider's key set (AUTH_JWKS_URL) ${err.message}. Please retry shortly.`,
      'auth_unavailable',
      null,
      { 'retry-after': RETRY_AFTER_SEC },
    );
  }
  if (err instanceof errors.JWTExpired) return invalidToken('The token has expired (exp).');
  if (err instanceof errors.JWTClaimValidationFailed) return invalidToken(claimMessage(err.claim, err.reason));
  if (err instanceof errors.JOSEAlgNotAllowed) {
    const alg = headerAlg(token);
    return invalidToken(
      `The token is signed with ${alg === null ? 'an algorithm' : JSON.stringify(alg)}, which this server does not accept; it accepts ${config.algorithms.join(', ')}.`,
    );
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalidToken("The token's signature does not verify: it was altered or signed with another key.");
  if (err instanceof errors.JWKSNoMatchingKey) return invalidToken("The identity provider has no key for this token: its key id (kid) is unknown or was retired.");
  if (err instanceof errors.JWKSMultipleMatchingKeys) return invalidToken("The token names no key id (kid) and several of the identity provider's keys could match.");
  if (err instanceof errors.JWTInvalid) return invalidToken("The token is malformed: its claims are not a JSON object.");
  if (err instanceof errors.JWSInvalid) return invalidToken('The token is malformed: it is not a signed JWT in compact form (header.claims.signature, base64url).');
  // An extension the token marks critical (crit) that jose does not implement.
  if (err instanceof errors.JOSENotSupported) return invalidToken('The token uses a JOSE extension (crit) this server does not support.');
  return err;
}

function claimMessage(claim: string, reason: string): string {
  if (reason === 'invalid') return `The token's ${claim} claim is not a number.`;
  switch (claim) {
    case 'sub':
      return 'The token has no subject (sub).';
    case 'iss':
      return reason === 'missing' ? 'The token has no issuer (iss), and this server requires one.' : 'The token was issued by another issuer (iss) than the one this server trusts.';
    case 'aud':
      return reason === 'missing' ? 'The token has no audience (aud), and this server requires one.' : 'The token is meant for another audience (aud), not this server.';
    case 'nbf':
      return 'The token is not valid yet (nbf is in the future).';
    default:
      return `The token's ${claim} claim is not acceptable.`;
  }
}

/** The token's `alg`, when it is a plain short name worth quoting back (never anything longer). */
function headerAlg(token: string): string | null {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg === 'string' && /^[A-Za-z0-9-]{1,16}$/.test(alg) ? alg : null;
  } catch {
    return null;
  }
}
