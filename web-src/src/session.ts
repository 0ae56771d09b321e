// The signed-in user and the polled network, shared by every page.

import { createContext } from "preact";
import { useContext } from "preact/hooks";

import type { Polled } from "./hooks";
import type { NetworkView, WhoAmI } from "./types";

export interface Session {
  me: WhoAmI;
  network: Polled<NetworkView>;
}

export const SessionContext = createContext<Session | null>(null);

/** The signed-in user and the polled network (clock, links, sites). */
export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside the signed-in shell");
  return s;
}
