// Baked in by scripts/build.ts with --define; running from source falls back to "dev".
declare const WALLAROO_VERSION: string | undefined;
export const VERSION: string = typeof WALLAROO_VERSION === "string" ? WALLAROO_VERSION : "0.0.0-dev";
