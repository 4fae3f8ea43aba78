/** Where the service is, which app, and the caller's token (minted by the app's backend). */
export interface KitOptions {
  baseUrl: string;
  appId: string;
  getToken: () => string | Promise<string>;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** How many times a 503 is retried after its Retry-After (default 3). */
  maxRetries?: number;
  /** The longest wait for one retry, in milliseconds (default 5000). */
  maxRetryDelayMs?: number;
  /**
   * The group whose conversation `conversationId` is, or null. Default: an id that reads
   * as a group id is that group; any other is the group of the caller's groups linked to
   * it (from `GET /im/user/{clientId}/groups`, whose entries name their `conversation_id`).
   */
  groupOf?: (
    conversationId: string,
    clientId: string,
  ) => string | number | null | Promise<string | number | null>;
}

/** What leancloud-realtime takes from a signature factory. */
export interface SdkSignature {
  signature: string;
  timestamp: number;
  nonce: string;
}

export interface SignatureFactories {
  signatureFactory(clientId: string): Promise<SdkSignature>;
  conversationSignatureFactory(
    conversationId: string | null,
    clientId: string,
    ids: string[],
    action: 'create' | 'add' | 'remove',
  ): Promise<SdkSignature>;
  blacklistSignatureFactory(
    clientId: string,
    conversationId: string | null,
    ids: string[],
    action:
      | 'conversation-block-clients'
      | 'conversation-unblock-clients'
      | 'client-block-conversations'
      | 'client-unblock-conversations',
  ): Promise<SdkSignature>;
}

export function signatureFactories(options: KitOptions): SignatureFactories;

export interface UserSig {
  userID: string;
  userSig: string;
  sdkAppId: number;
  expiresAt: number;
}

export function getUserSig(options: KitOptions): (clientId: string) => Promise<UserSig>;

/** A 401, 403 or 404: its message says which rule refused. */
export class RefusedError extends Error {
  action: string;
  status: number;
}

/** The SDK's order of member ids: JavaScript's default sort, duplicates removed. */
export function sdkOrder(ids: string[]): string[];
