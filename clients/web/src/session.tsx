// Who is signed in: the token's principal from the gateway's /whoami (local mode needs none).
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { setToken, whoami, type Principal } from "./api";

type Session = {
  principal: Principal | null;
  checked: boolean;
  signIn: (token: string) => Promise<string | null>;
  signOut: () => void;
};

const SessionContext = createContext<Session>({
  principal: null,
  checked: false,
  signIn: async () => "not ready",
  signOut: () => undefined,
});

export function SessionProvider({ children }: { children: ReactNode }) {
  const [principal, setPrincipal] = useState<Principal | null>(null);
  const [checked, setChecked] = useState(false);
  useEffect(() => {
    whoami()
      .then((who) => setPrincipal("subject" in who ? who : null))
      .catch(() => setPrincipal(null))
      .finally(() => setChecked(true));
  }, []);
  const signIn = useCallback(async (token: string) => {
    const who = await whoami(token.trim());
    if (!("subject" in who)) return who.error;
    setToken(token.trim());
    setPrincipal(who);
    return null;
  }, []);
  const signOut = useCallback(() => {
    setToken("");
    setPrincipal(null);
    whoami("").then((who) => setPrincipal("subject" in who ? who : null));
  }, []);
  return <SessionContext.Provider value={{ principal, checked, signIn, signOut }}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  return useContext(SessionContext);
}
