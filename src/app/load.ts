// Resolves `--application-module`: a built-in name or a path to a module the binary imports at
// run time. The module's default export (or named export `application`) is an AppSpec, or a
// function `(api) => AppSpec | Promise<AppSpec>` that receives the public API namespace, which
// spares a run-time module its own copy of the API. The result is validated and its initial
// states are checked to survive migration before any worker starts with it.
import { existsSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { AppError } from "../errors.ts";
import * as api from "../index.ts";
import { registerApiModule } from "./api-module.ts";
import type { AppSpec } from "./types.ts";
import { isAppError, validatedSpec } from "./validate.ts";

type AppModule = { default?: unknown; application?: unknown };

/** The applications built into the binary, each imported only when asked for. */
export const BUILTIN_APPS = {
  alphabet: () => import("./builtins/alphabet.ts"),
  word_count: () => import("./builtins/word_count.ts"),
  sequence_window: () => import("./builtins/sequence_window.ts"),
  passthrough: () => import("./builtins/passthrough.ts"),
} as const;
export type BuiltinAppName = keyof typeof BUILTIN_APPS;

/** File name endings accepted for an application module path. */
export const APP_MODULE_EXTENSIONS = [".ts", ".js", ".mjs", ".mts"] as const;

export function isBuiltinApp(name: string): name is BuiltinAppName {
  return Object.hasOwn(BUILTIN_APPS, name);
}

/** Loads, validates and checks an application: a built-in name, or a module path (relative to cwd). */
export async function loadApplication(nameOrPath: string): Promise<AppSpec> {
  if (typeof nameOrPath !== "string" || nameOrPath.length === 0) {
    throw new AppError(`no application given: use a built-in (${Object.keys(BUILTIN_APPS).join(", ")}) or a path to a module`);
  }
  let mod: AppModule;
  let where: string;
  if (isBuiltinApp(nameOrPath)) {
    where = `built-in application ${nameOrPath}`;
    mod = await BUILTIN_APPS[nameOrPath]();
  } else {
    if (!APP_MODULE_EXTENSIONS.some((ext) => nameOrPath.endsWith(ext))) {
      throw new AppError(
        `Unknown application "${nameOrPath}": use a built-in (${Object.keys(BUILTIN_APPS).join(", ")}) or a path to a ${APP_MODULE_EXTENSIONS.join("/")} module`,
      );
    }
    const path = isAbsolute(nameOrPath) ? nameOrPath : resolve(process.cwd(), nameOrPath);
    where = `Application module ${nameOrPath}`;
    if (!existsSync(path)) throw new AppError(`Application module ${nameOrPath} not found (looked for ${path})`);
    if (!statSync(path).isFile()) throw new AppError(`Application module ${nameOrPath} is not a file (${path})`);
    registerApiModule();
    try {
      mod = (await import(path)) as AppModule;
    } catch (e) {
      throw new AppError(`${where} failed to load: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return specFromModule(mod, where);
}

/** Turns an imported module into a validated AppSpec (exported for tests and embedding). */
export async function specFromModule(mod: AppModule, where: string): Promise<AppSpec> {
  let exported = mod.default;
  if (exported === undefined) exported = mod.application;
  if (exported === undefined) {
    throw new AppError(`${where} exports no application: give it a default export (an AppSpec, or a function (api) => AppSpec)`);
  }
  let value: unknown = exported;
  if (typeof exported === "function") {
    try {
      value = await exported(api);
    } catch (e) {
      // A module with its own copy of the builder throws its own AppError class: match by name.
      if (isAppError(e)) throw new AppError(`${where}: ${e.message}`);
      throw new AppError(`${where} failed while building its application: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return validatedSpec(value, where);
}
