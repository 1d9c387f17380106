import { StrictMode, useEffect } from "react";
import { createRoot } from "react-dom/client";
import "./style.css";
import { Link, navigate, useRoute, type Route } from "./router";
import { SessionProvider, useSession } from "./session";
import { Catalogue } from "./pages/Catalogue";
import { ModelPage } from "./pages/Model";
import { VersionPage } from "./pages/Version";
import { Approvals } from "./pages/Approvals";
import { Audit } from "./pages/Audit";
import { SignIn } from "./pages/SignIn";

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "catalogue":
      return <Catalogue query={route.query} />;
    case "model":
      return <ModelPage model={route.model} />;
    case "version":
      return <VersionPage model={route.model} version={route.version} />;
    case "approvals":
      return <Approvals />;
    case "audit":
      return <Audit params={route.filter} />;
    case "signin":
      return <SignIn next={route.next} />;
    case "missing":
      return (
        <section>
          <h1>Not found</h1>
          <p>
            There is no page at <code>{route.path}</code>. Go to the <Link href="/">model catalogue</Link>.
          </p>
        </section>
      );
  }
}

const TITLES: Record<Route["page"], string> = {
  catalogue: "Models",
  model: "Model",
  version: "Version",
  approvals: "Approvals",
  audit: "Audit log",
  signin: "Sign in",
  missing: "Not found",
};

function App() {
  const route = useRoute();
  const { principal, checked, signOut } = useSession();
  useEffect(() => {
    const detail = route.page === "model" ? route.model : route.page === "version" ? `${route.model} v${route.version}` : "";
    document.title = `${detail || TITLES[route.page]} · modelreg`;
  }, [route]);
  useEffect(() => {
    // Token mode without a token: every call would be UNAUTHENTICATED, so ask for one first.
    if (checked && !principal && route.page !== "signin") {
      navigate(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    }
  }, [checked, principal, route.page]);
  const nav = (href: string, label: string, active: boolean) => (
    <Link href={href} aria-current={active ? "page" : undefined}>
      {label}
    </Link>
  );
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href="/" className="brand">
          <span className="logo" aria-hidden="true" />
          modelreg
        </Link>
        <nav aria-label="main">
          {nav("/", "Models", ["catalogue", "model", "version"].includes(route.page))}
          {nav("/approvals", "Approvals", route.page === "approvals")}
          {nav("/audit", "Audit log", route.page === "audit")}
        </nav>
        <div className="who">
          {principal ? (
            <>
              <span className="principal" data-testid="principal" title={`signed in by ${principal.method}`}>
                {principal.subject}
              </span>
              {principal.method !== "local" && (
                <button type="button" className="link" onClick={signOut}>
                  Sign out
                </button>
              )}
            </>
          ) : (
            <Link href="/signin">Sign in</Link>
          )}
        </div>
      </header>
      <main id="main">{checked ? <Page route={route} /> : <p className="loading">Connecting…</p>}</main>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <SessionProvider>
      <App />
    </SessionProvider>
  </StrictMode>,
);
