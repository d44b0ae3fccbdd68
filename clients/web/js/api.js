// REST calls and the WebSocket URL, all relative to the page, so the player works under any
// path prefix a proxy serves it from (the page is served at "<prefix>/").

export class ApiError extends Error {
  constructor(status, code, message, retryable) {
    super(`${message} (${code})`);
    this.status = status;
    this.code = code;
    this.retryable = retryable;
  }
}

export function apiUrl(path) {
  return new URL(path, document.baseURI).toString();
}

export async function request(method, path, body, apiKey) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(apiUrl(path), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code || `http_${response.status}`, err.message || response.statusText, !!err.retryable);
  }
  return data;
}

export function streamUrl(sessionId, apiKey) {
  const url = new URL(`v1/sessions/${encodeURIComponent(sessionId)}/stream`, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (apiKey) url.searchParams.set("token", apiKey);
  return url.toString();
}
