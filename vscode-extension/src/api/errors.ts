/** Errors of the Stratus API client. Shared by desktop and web: no Node built-ins. */

/** A 4xx/5xx answer. `message` is the envelope's message: what the user sees. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: Record<string, unknown> = {},
    readonly headers: Headers = new Headers(),
  ) {
    super(message);
    this.name = "ApiError";
  }

  get isConflict(): boolean {
    return this.status === 409;
  }
}

/** The server could not be reached at all (DNS, refused, TLS, aborted by timeout). */
export class ServerUnreachableError extends Error {
  constructor(
    readonly serverUrl: string,
    readonly cause: unknown,
  ) {
    super(`Cannot reach the Stratus server at ${serverUrl}.`);
    this.name = "ServerUnreachableError";
  }
}

/**
 * The message to show for an error: the envelope's message for an ApiError, a plain
 * sentence otherwise. Never "[object Object]", never empty.
 */
export function errorMessage(error: unknown): string {
  if (error instanceof Error && error.message) {
    return error.message;
  }
  return String(error) || "Unknown error";
}

/**
 * Parse an answer body into an ApiError. The API's envelope is
 * {"error": {"code", "message", "fields"}}; a proxy's HTML page or an empty body still
 * gives a readable message naming the status.
 */
export function apiErrorFromBody(status: number, statusText: string, body: string, headers: Headers): ApiError {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown; fields?: unknown } };
    const env = parsed?.error;
    if (env && typeof env.message === "string" && env.message) {
      return new ApiError(
        status,
        typeof env.code === "string" ? env.code : "error",
        env.message,
        (env.fields as Record<string, unknown>) ?? {},
        headers,
      );
    }
  } catch {
    // not JSON: fall through
  }
  const reason = statusText || "error";
  return new ApiError(status, `http_${status}`, `The server answered ${status} ${reason}.`, {}, headers);
}
