// What every page gets: who is signed in and which tenant it looks at.
import type { Tenant, Who } from './api';

export interface Ctx {
  who: Who;
  /** The tenant shown: the user's, or the one the operator picked. */
  clientId?: string;
  /** That tenant, once loaded. */
  tenant?: Tenant;
}

/** The `client_id` query parameter: needed by the operator key only. */
export function scope(ctx: Ctx): { client_id?: string } {
  return ctx.who.kind === 'operator' ? { client_id: ctx.clientId } : {};
}
