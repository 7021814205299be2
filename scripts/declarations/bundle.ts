// Bundles declaration files into one `declare module "<name>" { … }` block holding only what the
// chosen exports reach: a declaration is copied (its doc comment with it) when an export names it
// or a copied declaration mentions it, following imports across files. The result needs no other
// file, which is what lets `wallaroo types` hand an editor one self-contained file.
//
// It works on tsc's declaration output, so only the shapes tsc emits need handling; anything else
// on the way (a namespace import, an `import("…")` type of another file, a package import, two
// declarations of one name from different files) stops the build with a sentence naming it.
import { dirname, join } from "node:path";
import ts from "typescript";

export interface BundleInput {
  /** The module name the bundle declares. */
  readonly moduleName: string;
  /** The declaration file whose exports the bundle exports. */
  readonly entry: string;
  /** Reads a declaration file by absolute path; undefined when there is none. */
  readonly read: (path: string) => string | undefined;
  /** The entry is a script holding `declare module "<ambient>" { … }`: that block is its scope. */
  readonly ambient?: string;
  /** The entry's exports to keep, in this order (default: all of them). */
  readonly only?: readonly string[];
}

type ExportRef = { readonly local: string } | { readonly path: string; readonly name: string };

interface Scope {
  readonly path: string;
  readonly sf: ts.SourceFile;
  readonly statements: readonly ts.Statement[];
  readonly decls: Map<string, ts.Statement[]>;
  readonly imports: Map<string, { readonly path: string; readonly name: string }>;
  readonly exports: Map<string, ExportRef>;
  readonly stars: string[];
}

interface Target {
  readonly scope: Scope;
  readonly name: string;
}

/** One block `declare module "<moduleName>" { … }` with what the entry's exports need. */
export function bundleDeclarations(input: BundleInput): string {
  const scopes = new Map<string, Scope>();
  const scopeOf = (path: string): Scope => {
    let s = scopes.get(path);
    if (!s) {
      s = readScope(path, input, path === input.entry ? input.ambient : undefined);
      scopes.set(path, s);
    }
    return s;
  };

  const resolveExport = (path: string, name: string, depth = 0): Target | undefined => {
    if (depth > 32) throw new Error(`${path}: re-exports of "${name}" go round in a circle`);
    const scope = scopeOf(path);
    const ref = scope.exports.get(name);
    if (ref && "local" in ref) return resolveLocal(scope, ref.local, depth + 1);
    if (ref) return resolveExport(ref.path, ref.name, depth + 1);
    for (const star of scope.stars) {
      const t = resolveExport(star, name, depth + 1);
      if (t) return t;
    }
    return undefined;
  };
  const resolveLocal = (scope: Scope, name: string, depth = 0): Target | undefined => {
    if (scope.decls.has(name)) return { scope, name };
    const imp = scope.imports.get(name);
    if (!imp) return undefined;
    if (imp.name === "*") throw new Error(`${scope.path}: the namespace import "${name}" is not supported by the declaration bundler`);
    return resolveExport(imp.path, imp.name, depth + 1);
  };

  const included = new Map<string, Target>();
  const byName = new Map<string, string>();
  const queue: Target[] = [];
  const include = (t: Target): void => {
    const id = `${t.scope.path}#${t.name}`;
    if (included.has(id)) return;
    const other = byName.get(t.name);
    if (other !== undefined) throw new Error(`two declarations named "${t.name}" are needed (${other.split("#")[0]} and ${t.scope.path}): rename one`);
    byName.set(t.name, id);
    included.set(id, t);
    queue.push(t);
  };

  const entry = scopeOf(input.entry);
  const wanted = input.only ?? [...entry.exports.keys(), ...(entry.stars.length > 0 ? starNames(entry, scopeOf) : [])];
  const exported: string[] = [];
  for (const name of wanted) {
    const t = resolveExport(input.entry, name);
    if (!t) throw new Error(`${input.entry} does not export "${name}"`);
    include(t);
    exported.push(t.name === name ? name : `${t.name} as ${name}`);
  }

  const edits = new Map<ts.Statement, Edit[]>();
  while (queue.length > 0) {
    const t = queue.shift()!;
    for (const stmt of t.scope.decls.get(t.name)!) {
      if (edits.has(stmt)) continue;
      edits.set(stmt, referencesOf(stmt, t.scope, input, resolveLocal, include));
    }
  }

  const order = [...scopes.values()];
  const statements = [...edits.keys()].sort((a, b) => {
    const sa = order.findIndex((s) => s.sf === a.getSourceFile());
    const sb = order.findIndex((s) => s.sf === b.getSourceFile());
    return sa !== sb ? sa - sb : a.pos - b.pos;
  });
  const body = statements.map((s) => indent(applyEdits(s, [...edits.get(s)!, ...modifierEdits(s)]))).join("\n");
  return `declare module ${JSON.stringify(input.moduleName)} {\n${body}\n  export { ${exported.join(", ")} };\n}\n`;
}

function starNames(scope: Scope, scopeOf: (p: string) => Scope): string[] {
  return scope.stars.flatMap((p) => [...scopeOf(p).exports.keys()]);
}

function readScope(path: string, input: BundleInput, ambient: string | undefined): Scope {
  const text = input.read(path);
  if (text === undefined) throw new Error(`no declarations for ${path}`);
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.ESNext, true);
  let statements: readonly ts.Statement[] = sf.statements;
  if (ambient !== undefined) {
    const block = sf.statements.find(
      (s): s is ts.ModuleDeclaration => ts.isModuleDeclaration(s) && ts.isStringLiteral(s.name) && s.name.text === ambient,
    );
    if (!block?.body || !ts.isModuleBlock(block.body)) throw new Error(`${path} declares no module "${ambient}"`);
    statements = block.body.statements;
  }
  const scope: Scope = { path, sf, statements, decls: new Map(), imports: new Map(), exports: new Map(), stars: [] };
  const from = (spec: ts.Expression): string => resolveSpecifier(path, (spec as ts.StringLiteral).text, input.read);
  for (const stmt of statements) {
    if (ts.isImportDeclaration(stmt)) {
      const target = from(stmt.moduleSpecifier);
      const clause = stmt.importClause;
      if (clause?.name) scope.imports.set(clause.name.text, { path: target, name: "default" });
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) scope.imports.set(bindings.name.text, { path: target, name: "*" });
      else if (bindings) for (const el of bindings.elements) scope.imports.set(el.name.text, { path: target, name: (el.propertyName ?? el.name).text });
      continue;
    }
    if (ts.isExportDeclaration(stmt)) {
      const target = stmt.moduleSpecifier ? from(stmt.moduleSpecifier) : undefined;
      if (!stmt.exportClause) {
        if (target) scope.stars.push(target);
      } else if (ts.isNamedExports(stmt.exportClause)) {
        for (const el of stmt.exportClause.elements) {
          const inner = (el.propertyName ?? el.name).text;
          scope.exports.set(el.name.text, target ? { path: target, name: inner } : { local: inner });
        }
      }
      continue;
    }
    const names = declaredNames(stmt);
    for (const n of names) {
      const list = scope.decls.get(n) ?? [];
      list.push(stmt);
      scope.decls.set(n, list);
    }
    const exported = ts.canHaveModifiers(stmt) && ts.getModifiers(stmt)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (exported) for (const n of names) scope.exports.set(n, { local: n });
  }
  return scope;
}

function declaredNames(stmt: ts.Statement): string[] {
  if (ts.isVariableStatement(stmt)) return stmt.declarationList.declarations.flatMap((d) => (ts.isIdentifier(d.name) ? [d.name.text] : []));
  if (
    (ts.isInterfaceDeclaration(stmt) || ts.isTypeAliasDeclaration(stmt) || ts.isClassDeclaration(stmt) || ts.isEnumDeclaration(stmt) || ts.isFunctionDeclaration(stmt)) &&
    stmt.name
  )
    return [stmt.name.text];
  if (ts.isModuleDeclaration(stmt) && ts.isIdentifier(stmt.name)) return [stmt.name.text];
  return [];
}

/** `./types.ts` (or `./types`) next to `from` → the absolute path of its declaration file. */
function resolveSpecifier(from: string, spec: string, read: (p: string) => string | undefined): string {
  if (!spec.startsWith(".")) throw new Error(`${from} imports "${spec}": the public declarations may only reach this repository's own files`);
  const base = join(dirname(from), spec);
  const candidates = [base.replace(/\.(ts|mts|js|mjs)$/, ".d.ts"), `${base}.d.ts`, join(base, "index.d.ts"), base];
  const found = candidates.find((c) => c.endsWith(".d.ts") && read(c) !== undefined);
  if (!found) throw new Error(`${from} imports "${spec}", which has no declarations (looked for ${candidates[0]})`);
  return found;
}

interface Edit {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

/**
 * Includes every declaration `stmt` mentions and returns the edits its text needs: an imported
 * alias replaced by the declaration's own name, `import("<entry>")` by the bundle's module name.
 */
function referencesOf(
  stmt: ts.Statement,
  scope: Scope,
  input: BundleInput,
  resolveLocal: (scope: Scope, name: string) => Target | undefined,
  include: (t: Target) => void,
): Edit[] {
  const edits: Edit[] = [];
  // Type parameters shadow declarations of the same name anywhere inside the statement.
  const shadowed = new Set<string>();
  const collect = (n: ts.Node): void => {
    if (ts.isTypeParameterDeclaration(n)) shadowed.add(n.name.text);
    ts.forEachChild(n, collect);
  };
  collect(stmt);
  const visit = (n: ts.Node): void => {
    if (ts.isImportTypeNode(n)) {
      const arg = n.argument;
      const spec = ts.isLiteralTypeNode(arg) && ts.isStringLiteral(arg.literal) ? arg.literal.text : undefined;
      const target = spec === undefined ? undefined : resolveSpecifier(scope.path, spec, input.read);
      if (target !== input.entry || input.ambient !== undefined || n.qualifier) {
        throw new Error(`${scope.path}: the type ${n.getText()} is not supported by the declaration bundler (only typeof import("<the entry>"))`);
      }
      const lit = (arg as ts.LiteralTypeNode).literal;
      edits.push({ start: lit.getStart(), end: lit.end, text: JSON.stringify(input.moduleName) });
      return;
    }
    if (ts.isIdentifier(n) && !isMemberName(n) && !shadowed.has(n.text)) {
      const t = resolveLocal(scope, n.text);
      if (t) {
        include(t);
        if (t.name !== n.text) edits.push({ start: n.getStart(), end: n.end, text: t.name });
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(stmt);
  return edits;
}

/** Identifiers that name a member or parameter rather than refer to a declaration. */
function isMemberName(n: ts.Identifier): boolean {
  const p = n.parent;
  if (ts.isQualifiedName(p)) return p.right === n;
  if (ts.isPropertyAccessExpression(p)) return p.name === n;
  return (
    (ts.isPropertySignature(p) ||
      ts.isMethodSignature(p) ||
      ts.isPropertyDeclaration(p) ||
      ts.isMethodDeclaration(p) ||
      ts.isGetAccessor(p) ||
      ts.isSetAccessor(p) ||
      ts.isEnumMember(p) ||
      ts.isParameter(p) ||
      ts.isBindingElement(p) ||
      ts.isPropertyAssignment(p) ||
      ts.isNamedTupleMember(p)) &&
    p.name === n
  );
}

/** `export` and `declare` are implied inside `declare module` (and `declare` is refused there). */
function modifierEdits(stmt: ts.Statement): Edit[] {
  if (!ts.canHaveModifiers(stmt)) return [];
  const text = stmt.getSourceFile().text;
  const out: Edit[] = [];
  for (const m of ts.getModifiers(stmt) ?? []) {
    if (m.kind === ts.SyntaxKind.DefaultKeyword) throw new Error(`${stmt.getSourceFile().fileName}: default exports are not supported by the declaration bundler`);
    if (m.kind !== ts.SyntaxKind.ExportKeyword && m.kind !== ts.SyntaxKind.DeclareKeyword) continue;
    let end = m.end;
    while (text[end] === " ") end++;
    out.push({ start: m.getStart(), end, text: "" });
  }
  return out;
}

function applyEdits(stmt: ts.Statement, edits: Edit[]): string {
  let text = stmt.getSourceFile().text.slice(stmt.pos, stmt.end);
  for (const e of [...edits].sort((a, b) => b.start - a.start)) text = text.slice(0, e.start - stmt.pos) + e.text + text.slice(e.end - stmt.pos);
  return text;
}

/** Re-indents a statement (its doc comment included) two spaces into the module block. */
function indent(text: string): string {
  const lines = text.replace(/^\s*\n/, "").replace(/\s+$/, "").split("\n");
  const base = /^ */.exec(lines[0]!)![0].length;
  return lines.map((l) => (l.trim() === "" ? "" : `  ${l.slice(Math.min(base, /^ */.exec(l)![0].length))}`)).join("\n");
}
