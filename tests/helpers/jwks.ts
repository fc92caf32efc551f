import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTHeaderParameters, type JWTPayload } from 'jose';

/*
 * A local identity provider for the JWT tests: a real HTTP server on 127.0.0.1 serving
 * /jwks.json, which a test can rotate, break or take down, and helpers that sign tokens with its
 * keys (and the ways an attacker would sign them instead).
 */

export type TestAlg = 'RS256' | 'ES256' | 'PS256' | 'EdDSA';

export interface TestKey {
  kid: string;
  alg: TestAlg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public key as the key set publishes it. */
  jwk: JWK;
}

export async function newKey(alg: TestAlg, kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** What /jwks.json answers: the keys, a status with an error body, no answer at all, or a body that is not a key set. */
export type JwksBehaviour = { serve: 'keys' } | { serve: 'status'; status: number } | { serve: 'hang' } | { serve: 'body'; contentType: string; body: string; chunked?: boolean };

export interface JwksServer {
  url: string;
  /** Requests /jwks.json has had. */
  readonly fetches: number;
  /** Publishes these keys from now on (a rotation drops the ones left out). */
  setKeys(keys: Pick<TestKey, 'jwk'>[]): void;
  behave(behaviour: JwksBehaviour): void;
  /** Stops listening: fetches are refused until up(). */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startJwksServer(keys: Pick<TestKey, 'jwk'>[]): Promise<JwksServer> {
  let published = keys;
  let behaviour: JwksBehaviour = { serve: 'keys' };
  let fetches = 0;
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    switch (behaviour.serve) {
      case 'keys':
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: published.map((k) => k.jwk) }));
        return;
      case 'status':
        res.writeHead(behaviour.status, { 'content-type': 'application/json' }).end('{"error":"broken"}');
        return;
      case 'body':
        // Chunked: no content-length announces the size, the reader finds out as it goes.
        res.writeHead(200, { 'content-type': behaviour.contentType, ...(!behaviour.chunked && { 'content-length': Buffer.byteLength(behaviour.body) }) });
        res.end(behaviour.body);
        return;
      case 'hang':
        hanging.add(res);
        return;
    }
  });
  const listen = (port: number) => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const res of hanging) res.destroy();
      hanging.clear();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  await listen(0);
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    get fetches() {
      return fetches;
    },
    setKeys(keys) {
      published = keys;
    },
    behave(next) {
      behaviour = next;
    },
    down: stop,
    up: () => listen(port),
    close: () => (server.listening ? stop() : Promise.resolve()),
  };
}

export const ISSUER = 'https://idp.test';
export const AUDIENCE = 'chat-proxy';
/** The verifier's clock in these tests; tokens are dated relative to it. */
export const NOW = new Date('2030-01-01T00:00:00Z');
export const nowSec = Math.floor(NOW.getTime() / 1000);

/** Claims of a good token at NOW: `claims` override them, an undefined value removes one. */
function claimsOf(claims: JWTPayload): JWTPayload {
  const all: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub: 'user-1', iat: nowSec, exp: nowSec + 300, ...claims };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
}

/** A token signed with `key`, its kid in the header. */
export function sign(key: TestKey, claims: JWTPayload = {}, header: Partial<JWTHeaderParameters> = {}): Promise<string> {
  return new SignJWT(claimsOf(claims)).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

/** An HS256 token signed with `secret` (a shared secret, or an attacker's guess at one). */
export function signHs256(secret: string | Uint8Array, claims: JWTPayload = {}, header: Partial<JWTHeaderParameters> = {}): Promise<string> {
  const bytes = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  return new SignJWT(claimsOf(claims)).setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...header }).sign(bytes);
}

/**
 * The HS/RS confusion attack: an HS256 token whose HMAC key is the provider's RSA public key as
 * PEM, which anyone can download. A verifier that let the token pick the algorithm would check
 * the HMAC with that same public key and accept it.
 */
export async function confusedToken(key: TestKey, claims: JWTPayload = {}): Promise<string> {
  return signHs256(await exportSPKI(key.publicKey), claims, { kid: key.kid });
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** `alg: none`, built by hand (jose refuses to make one): header.claims. with an empty signature. */
export function unsignedToken(claims: JWTPayload = {}, kid?: string): string {
  return `${b64({ alg: 'none', typ: 'JWT', ...(kid && { kid }) })}.${b64(claimsOf(claims))}.`;
}

/** The token with one character of its signature changed (mid-way: the last may only carry padding bits). */
export function tamperSignature(token: string): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const i = Math.floor(s.length / 2);
  return `${h}.${p}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
}

/** The token with its claims replaced, keeping the original signature. */
export function tamperClaims(token: string, claims: JWTPayload): string {
  const [h, , s] = token.split('.') as [string, string, string];
  return `${h}.${b64(claimsOf(claims))}.${s}`;
}

/**
 * An RS256 token built and signed by hand, with any header: for what jose refuses to produce
 * (an unknown `crit` extension, a key under 2048 bits).
 */
export async function signRs256ByHand(privateKey: CryptoKey, header: Record<string, unknown>, claims: JWTPayload = {}): Promise<string> {
  const input = `${b64({ alg: 'RS256', typ: 'JWT', ...header })}.${b64(claimsOf(claims))}`;
  const signature = await crypto.subtle.sign('RSASSA-PKCS1-v1_5', privateKey, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(signature).toString('base64url')}`;
}

/** A token signed with a key jose itself would refuse to sign with (RSA under 2048 bits), and that key's JWK. */
export async function signWithWeakRsa(kid: string, claims: JWTPayload = {}): Promise<{ token: string; jwk: JWK }> {
  const { privateKey, publicKey } = (await crypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    true,
    ['sign', 'verify'],
  )) as CryptoKeyPair;
  return { token: await signRs256ByHand(privateKey, { kid }, claims), jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}
