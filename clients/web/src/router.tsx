// A small history-API router: a few known paths, links that push state, back/forward.
import { useEffect, useState, type AnchorHTMLAttributes, type MouseEvent } from "react";

export type Route =
  | { page: "catalogue"; query: string }
  | { page: "model"; model: string }
  | { page: "version"; model: string; version: string }
  | { page: "approvals" }
  | { page: "audit"; filter: URLSearchParams }
  | { page: "signin"; next: string }
  | { page: "missing"; path: string };

export function parseRoute(location: Location): Route {
  const path = decodeURI(location.pathname).replace(/\/+$/, "") || "/";
  const params = new URLSearchParams(location.search);
  let m: RegExpExecArray | null;
  if (path === "/") return { page: "catalogue", query: params.get("q") ?? "" };
  if ((m = /^\/models\/([^/]+)$/.exec(path))) return { page: "model", model: m[1] };
  if ((m = /^\/models\/([^/]+)\/versions\/([^/]+)$/.exec(path)))
    return { page: "version", model: m[1], version: m[2] };
  if (path === "/approvals") return { page: "approvals" };
  if (path === "/audit") return { page: "audit", filter: params };
  if (path === "/signin") return { page: "signin", next: params.get("next") ?? "/" };
  return { page: "missing", path };
}

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
  if (!replace) window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location));
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location));
    listeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return route;
}

export function Link({ href, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const click = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={click} {...rest} />;
}

export function modelHref(model: string): string {
  return `/models/${encodeURIComponent(model)}`;
}

export function versionHref(model: string, version: string | bigint): string {
  return `/models/${encodeURIComponent(model)}/versions/${version}`;
}

/** A link for any resource name the registry returns, when the UI has a page for it. */
export function hrefOf(name: string): string | undefined {
  let m: RegExpExecArray | null;
  if ((m = /^models\/([^/]+)\/versions\/(\d+)$/.exec(name))) return versionHref(m[1], m[2]);
  if ((m = /^models\/([^/]+)(\/.*)?$/.exec(name))) return modelHref(m[1]);
  return undefined;
}
