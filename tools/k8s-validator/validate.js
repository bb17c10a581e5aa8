#!/usr/bin/env node
// Validates Kubernetes objects against the Kubernetes OpenAPI schemas, as the pinned npm package
// kubernetes-models (package.json) ships them: every object's own model class, `.validate()`
// (types, enums, required fields, quantity / int-or-string formats), then two checks the
// API server makes that its schemas leave out:
//   - unknown fields: `kubectl apply` rejects them (field validation Strict); the known fields
//     of each type are read from kubernetes-models' type declarations (.d.ts);
//   - metadata: a name (RFC 1123 subdomain), namespace, label and annotation syntax.
// A kind with no schema (a CRD such as a ServiceMonitor, or a typo) is an error, never skipped.
//
//   kubectl kustomize deploy/k8s/overlays/prod | node tools/k8s-validator/validate.js
//   node tools/k8s-validator/validate.js [--label NAME] [FILE|- ...]   (default: stdin)
//
// Prints one line per object; exits 1 if any object is invalid (or there is none), 2 on usage.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

const MODELS_PACKAGE = "kubernetes-models";
const modelsDir = path.dirname(require.resolve(`${MODELS_PACKAGE}/package.json`));
const nodeModules = path.dirname(modelsDir);
const modelsVersion = require(`${MODELS_PACKAGE}/package.json`).version;

// ---------------------------------------------------------------------------------------------
// Known fields, from the .d.ts files: each type's interface lists its properties and their types.

const dtsCache = new Map();

function resolveImport(fromFile, spec) {
  const base = spec.startsWith(".") ? path.resolve(path.dirname(fromFile), spec)
                                    : path.join(nodeModules, spec);
  return `${base}.d.ts`;
}

function splitTopLevel(text, separator) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "<" || c === "(" || c === "[") depth++;
    else if (c === "}" || c === ">" || c === ")" || c === "]") depth--;
    else if (c === separator && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

// Type text -> {leaf} | {array: T} | {map: T} | {ref: file}.
function parseType(text, imports) {
  text = text.trim();
  let m = /^Array<([\s\S]*)>$/.exec(text);
  if (m) return { array: parseType(m[1], imports) };
  m = /^\{\s*\[key: string\]:\s*([\s\S]*?);?\s*\}$/.exec(text);
  if (m) return { map: parseType(m[1], imports) };
  if (/^\w+$/.test(text) && imports.has(text)) return { ref: imports.get(text) };
  return { leaf: true };
}

// A .d.ts file -> {name, props: Map(field -> type)}, or null for aliases (string, IntOrString…)
// and for empty interfaces (free-form: RawExtension, FieldsV1, JSON).
function loadType(file) {
  if (dtsCache.has(file)) return dtsCache.get(file);
  dtsCache.set(file, null);  // cycles (JSONSchemaProps) resolve to "free-form" on re-entry
  if (!fs.existsSync(file)) throw new Error(`kubernetes-models: type declaration ${file} missing`);
  const text = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  const imports = new Map();
  for (const m of text.matchAll(/import \{([^}]*)\} from "([^"]+)";/g)) {
    for (const name of m[1].split(",").map((n) => n.trim()).filter(Boolean)) {
      const local = name.split(/\s+as\s+/).pop();
      imports.set(local, resolveImport(file, m[2]));
    }
  }
  const head = /export interface (\w+)(?: extends [\w, ]+)? \{/.exec(text);
  let result = null;
  if (head) {
    let depth = 1;
    let i = head.index + head[0].length;
    const start = i;
    for (; i < text.length && depth > 0; i++) {
      if (text[i] === "{") depth++;
      else if (text[i] === "}") depth--;
    }
    const props = new Map();
    for (const member of splitTopLevel(text.slice(start, i - 1), ";")) {
      const m = /^"([^"]+)"\??:\s*([\s\S]*)$/.exec(member);
      if (!m) throw new Error(`${file}: cannot read the member ${JSON.stringify(member)}`);
      props.set(m[1], parseType(m[2], imports));
    }
    if (props.size > 0) result = { name: head[1].replace(/^I/, ""), props };
  }
  dtsCache.set(file, result);
  return result;
}

function unknownFields(value, type, where, errors) {
  if (value === null || value === undefined || type.leaf) return;
  if (type.array) {
    if (Array.isArray(value)) {
      value.forEach((v, i) => unknownFields(v, type.array, `${where}[${i}]`, errors));
    }
    return;
  }
  if (type.map) {
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) {
        unknownFields(v, type.map, `${where}.${k}`, errors);
      }
    }
    return;
  }
  const known = loadType(type.ref);
  if (!known || typeof value !== "object" || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    const field = where ? `${where}.${k}` : k;
    if (!known.props.has(k)) {
      const fields = [...known.props.keys()].join(", ");
      errors.push(`${field}: unknown field (${known.name} has ${fields})`);
    } else {
      unknownFields(v, known.props.get(k), field, errors);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What the API server checks on metadata (apimachinery validation), not in the OpenAPI schemas.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
// Kinds whose names must be DNS-1123 labels (or, for Services, DNS-1035 labels).
const LABEL_NAMED = new Set(["Namespace", "Service"]);

function checkKey(key, what, errors) {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : "";
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0 && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    errors.push(`${what} ${JSON.stringify(key)}: the prefix must be a DNS subdomain`);
  }
  if (name.length > 63 || !QUALIFIED_NAME.test(name)) {
    errors.push(`${what} ${JSON.stringify(key)}: not a qualified name (<= 63 characters, ` +
                "alphanumerics, '-', '_', '.')");
  }
}

function checkMetadata(obj, errors) {
  const meta = obj.metadata;
  if (!meta || typeof meta !== "object") {
    errors.push("metadata: missing");
    return;
  }
  if (!meta.name && !meta.generateName) errors.push("metadata.name: missing");
  if (meta.name) {
    const label = LABEL_NAMED.has(obj.kind);
    const ok = label ? meta.name.length <= 63 && DNS1123_LABEL.test(meta.name) &&
                       (obj.kind !== "Service" || /^[a-z]/.test(meta.name))
                     : meta.name.length <= 253 && DNS1123_SUBDOMAIN.test(meta.name);
    if (!ok) {
      errors.push(`metadata.name ${JSON.stringify(meta.name)}: not a valid ${obj.kind} name ` +
                  `(${label ? "DNS label" : "DNS subdomain"})`);
    }
  }
  if (meta.namespace !== undefined &&
      (meta.namespace.length > 63 || !DNS1123_LABEL.test(meta.namespace))) {
    errors.push(`metadata.namespace ${JSON.stringify(meta.namespace)}: not a DNS label`);
  }
  for (const [k, v] of Object.entries(meta.labels || {})) {
    checkKey(k, "metadata.labels key", errors);
    if (typeof v !== "string" || v.length > 63 || !LABEL_VALUE.test(v)) {
      errors.push(`metadata.labels[${JSON.stringify(k)}] = ${JSON.stringify(v)}: ` +
                  "not a label value");
    }
  }
  for (const k of Object.keys(meta.annotations || {})) {
    checkKey(k, "metadata.annotations key", errors);
  }
}

// ---------------------------------------------------------------------------------------------

function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^\w+$/.test(kind) ||
      !/^([a-z0-9.-]+\/)?v\w+$/.test(apiVersion)) {
    return null;
  }
  let file;
  try {
    file = require.resolve(`${MODELS_PACKAGE}/${apiVersion}/${kind}`);
  } catch (e) {
    return null;
  }
  const model = require(file)[kind];
  // Only top-level kinds carry apiVersion and kind (DeploymentSpec, say, resolves but is not one).
  if (!model || model.apiVersion !== apiVersion || model.kind !== kind) return null;
  return { model, dts: file.replace(/\.js$/, ".d.ts") };
}

function validateObject(obj) {
  const errors = [];
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return ["not a mapping"];
  const found = modelFor(obj.apiVersion, obj.kind);
  if (!found) {
    return [`no schema for apiVersion ${JSON.stringify(obj.apiVersion)} kind ` +
            `${JSON.stringify(obj.kind)} in ${MODELS_PACKAGE} ${modelsVersion}: a custom ` +
            "resource (CRD) or a typo; it was not validated"];
  }
  try {
    new found.model(obj).validate();
  } catch (e) {
    if (Array.isArray(e.errors)) {
      // One line per field; the branches of a oneOf (number or quantity string, say) are joined.
      const byPath = new Map();
      for (const err of e.errors) {
        const where = (err.instancePath || "").split("/").slice(1)
          .map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : (i ? "." : "") + s)).join("") || "(root)";
        if (!byPath.has(where)) byPath.set(where, { messages: [], alternatives: false });
        const entry = byPath.get(where);
        if (err.keyword === "oneOf" || err.keyword === "anyOf") entry.alternatives = true;
        else if (err.keyword === "enum") {
          entry.messages.push(`must be one of ${JSON.stringify(err.params.allowedValues)}`);
        } else entry.messages.push(err.message);
      }
      for (const [where, entry] of byPath) {
        errors.push(`${where}: ${entry.messages.join(entry.alternatives ? " or " : "; ")}`);
      }
    } else {
      errors.push(`validate(): ${e.message}`);
    }
    if (errors.length === 0) errors.push(`validate(): ${e.message}`);
  }
  unknownFields(obj, { ref: found.dts }, "", errors);
  checkMetadata(obj, errors);
  return [...new Set(errors)];
}

function readInputs(argv) {
  const inputs = [];
  let label = null;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--label") label = argv[++i];
    else if (argv[i] === "-h" || argv[i] === "--help") {
      process.stdout.write(fs.readFileSync(__filename, "utf8").split("\n").slice(1, 15)
        .map((l) => l.replace(/^\/\/ ?/, "")).join("\n") + "\n");
      process.exit(0);
    } else if (argv[i].startsWith("--")) {
      process.stderr.write(`k8s-validate: unknown option ${argv[i]}\n`);
      process.exit(2);
    } else files.push(argv[i]);
  }
  if (files.length === 0) files.push("-");
  for (const f of files) {
    const text = fs.readFileSync(f === "-" ? 0 : f, "utf8");
    inputs.push({ name: label || (f === "-" ? "stdin" : f), text });
  }
  return inputs;
}

function main() {
  const inputs = readInputs(process.argv.slice(2));
  let valid = 0;
  let invalid = 0;
  for (const input of inputs) {
    const docs = YAML.parseAllDocuments(input.text);
    docs.forEach((doc, index) => {
      const where = `${input.name}#${index}`;
      if (doc.errors.length > 0) {
        invalid++;
        console.log(`FAIL: ${where}: invalid YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
        return;
      }
      const obj = doc.toJS();
      if (obj === null || obj === undefined) return;  // an empty document
      const items = obj.kind === "List" && Array.isArray(obj.items) ? obj.items : [obj];
      for (const item of items) {
        const meta = (item && item.metadata) || {};
        const name = `${(item && item.kind) || "?"}/${meta.name || "?"}`;
        const errors = validateObject(item);
        if (errors.length === 0) {
          valid++;
          console.log(`ok: ${input.name}: ${name} (${item.apiVersion})`);
        } else {
          invalid++;
          for (const e of errors) console.log(`FAIL: ${input.name}: ${name}: ${e}`);
        }
      }
    });
  }
  if (valid + invalid === 0) {
    console.log("FAIL: no Kubernetes object in the input");
    invalid++;
  }
  console.log(`k8s-validate (${MODELS_PACKAGE} ${modelsVersion}): ${valid} valid, ` +
              `${invalid} invalid`);
  process.exit(invalid > 0 ? 1 : 0);
}

main();
