/** Base64 and UTF-8 over Uint8Array with web globals only (atob/btoa, TextEncoder). */

export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    out[i] = binary.charCodeAt(i);
  }
  return out;
}

/** The bytes as the draft API's JSON: UTF-8 text when it round-trips, base64 otherwise. */
export function encodeContent(bytes: Uint8Array): { content: string; encoding: "utf-8" | "base64" } {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return { content: text, encoding: "utf-8" };
  } catch {
    return { content: bytesToBase64(bytes), encoding: "base64" };
  }
}

export function decodeContent(content: string, encoding: string): Uint8Array {
  return encoding === "base64" ? base64ToBytes(content) : new TextEncoder().encode(content);
}
