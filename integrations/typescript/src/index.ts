/**
 * `@countersign/sdk`: ask a person to approve one exact action (OpenID CIBA), wait for the
 * decision, and check the token against the action before running it. Framework wrappers live
 * in `@countersign/sdk/ai`, `@countersign/sdk/langchain` and `@countersign/sdk/langgraph`.
 */

export {
  CountersignClient,
  type ApprovalRequest,
  type ClientOptions,
  type DeliveryMode,
  type PendingApproval,
  type PollEvent,
  type ServerMetadata,
  type TokenSet,
  type WaitOptions,
} from "./client.js";
export * from "./errors.js";
export { canonicalJson, type Json } from "./jcs.js";
export {
  checkSameAction,
  RemoteJwks,
  StaticJwks,
  verifyAccessToken,
  type AccessTokenClaims,
  type Jwk,
  type KeySource,
  type TokenExpectations,
} from "./token.js";
export { ApprovalGuard, type ActionDescription, type ApprovalOptions } from "./guard.js";

import { checkSameAction, verifyAccessToken, type AccessTokenClaims, type KeySource, type TokenExpectations } from "./token.js";

/**
 * The execution check for an executor that is not the client (or pins the keys): verifies the
 * token with `keys` and `expect`, then that its `authorization_details` equal `action` by
 * canonical JSON. `CountersignClient.checkExecution` does the same with the discovered keys.
 */
export async function checkExecution(
  token: string,
  action: unknown,
  options: { keys: KeySource } & TokenExpectations,
): Promise<AccessTokenClaims> {
  const claims = await verifyAccessToken(token, options.keys, options);
  checkSameAction(claims.authorization_details, action);
  return claims;
}
