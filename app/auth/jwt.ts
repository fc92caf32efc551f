// TEMPORARY: replaced by work-auth's version on merge (same exports).
export interface JwtIdentity {
  issuer: string;
  subject: string;
  name: string | null;
}
export interface JwtVerifier {
  verify(token: string): Promise<JwtIdentity>;
}
export const looksLikeJwt = (token: string) => /^[\w-]+\.[\w-]+\.[\w-]*$/.test(token);
export function createJwtVerifier(_config: unknown): JwtVerifier | null {
  return null;
}
