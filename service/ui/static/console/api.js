// The admin JSON API with the key kept for this tab only (sessionStorage), never in a cookie or localStorage.

const KEY = "modelport.key";
const ROLE = "modelport.role";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  get role() {
    return sessionStorage.getItem(ROLE);
  },
  get isAdmin() {
    return sessionStorage.getItem(ROLE) === "admin";
  },
  save(key, role) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ROLE, role);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ROLE);
  },
};

export async function call(method, path, body, key = session.key) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const raw = await reply.text();
  let data = null;
  try {
    data = raw ? JSON.parse(raw) : null;
  } catch {
    data = null;
  }
  if (!reply.ok) {
    const message = (data && (data.error || data.detail)) || raw || reply.statusText;
    throw new ApiError(reply.status, String(message));
  }
  return data;
}

export const get = (path) => call("GET", path);
const enc = encodeURIComponent;

/**
 * Checks a key and finds its role. Any read call proves the key; `GET /admin/keys` needs the admin scope and
 * has no side effect, so 200 there means admin and 403 means read-only.
 */
export async function signIn(key) {
  await call("GET", "/admin/models", undefined, key);
  try {
    await call("GET", "/admin/keys", undefined, key);
    return "admin";
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return "read";
    throw err;
  }
}

export const api = {
  models: () => get("/admin/models"),
  model: (name) => get(`/admin/models/${enc(name)}`),
  audit: (name, limit = 50) => get(`/admin/audit?model=${enc(name)}&limit=${limit}`),
  stats: (name, windowS, bucketS) => get(`/admin/models/${enc(name)}/stats?window=${windowS}&bucket=${bucketS}`),
  setAlias: (name, alias, version) => call("PUT", `/admin/models/${enc(name)}/aliases/${enc(alias)}`, { version }),
  removeAlias: (name, alias) => call("DELETE", `/admin/models/${enc(name)}/aliases/${enc(alias)}`),
  setSplit: (name, splits) => call("PUT", `/admin/models/${enc(name)}/traffic`, { splits }),
  clearSplit: (name) => call("DELETE", `/admin/models/${enc(name)}/traffic`),
  rollouts: (name) => get(`/admin/models/${enc(name)}/rollouts`),
  abortRollout: (name, id) => call("POST", `/admin/models/${enc(name)}/rollouts/${enc(id)}/abort`),
};
