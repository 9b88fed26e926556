/**
 * List Blobs in fnhost's Azurite at a cost per page, not per container (see infra/local/README.md,
 * "Azurite listings"). JavaScript text, like the rest of the preload (azurite-preload.ts), which
 * evaluates it inside the Azurite process; tests evaluate the same text in-process against
 * Azurite's own code.
 *
 * Azurite (LokiJS metadata) answers each List Blobs page by scanning every blob of the account
 * (the prefix is a `$regex`, which Loki does not index), sorting the matches, and rendering the page
 * through a generic mapper-driven serializer and xml2js. Listing a folder of n blobs page by page
 * cost O(pages × n): at 100,000 blobs hundreds of milliseconds of Azurite's one thread per page of
 * 1,000. Two replacements, each falling back to Azurite's own code for whatever it does not cover:
 *
 * - **The page.** Each blob collection gets a name index: per account and container, its documents
 *   sorted by name (JavaScript string order, as Azurite's sort), kept up to date by wrapping the
 *   LokiJS collection methods every write goes through (add, update, remove, batch removal). A page
 *   is a binary search for the first name after the marker within the prefix, then Azurite's own
 *   `PageWithDelimiter` fed the documents from there in order, exactly the documents and order
 *   Azurite's query would give it. With a one-character delimiter, the rest of a folder that has
 *   become a `BlobPrefix` is skipped by a binary search too (only its last name matters: it becomes
 *   the marker, as in Azurite). Snapshots (`include=snapshots`), a multi-character or empty
 *   delimiter's folding, two documents of one name, a document whose name changed without an
 *   update, or an index that lost count of the collection fall back to Azurite's query (the index
 *   is rebuilt from the collection when its count is off).
 * - **The XML.** List Blobs answers (flat and hierarchy, status 200) are rendered by walking the
 *   same mappers Azurite's serializer walks, in the same order, with xmlbuilder's escaping, its
 *   empty-element form and its XML character checks, so the bytes are the same; headers still go
 *   through Azurite's serializer. A value the walk does not cover (a type other than string,
 *   number, boolean, enum, RFC 1123 date or byte array, a character XML 1.0 does not allow, a
 *   metadata name that is not an XML name, a null where Azurite would refuse one) makes it render
 *   the whole answer Azurite's way, errors included.
 *
 * `FNHOST_AZURITE_FAST_LIST=off` answers with Azurite's own code, `=index` replaces the page only
 * (for benchmarks and for comparing answers); anything else, or unset, replaces both. The mode can
 * be changed while Azurite runs (`setMode`; in memory, over IPC: AzuriteProcess.setListing), so
 * the same blobs can be listed both ways. The collection hooks stay installed in every mode; they
 * do nothing until a listing has built an index.
 */
export const AZURITE_LISTING = String.raw`
(function installFastListing(require, initialMode) {
  const MODES = ['off', 'index', 'on'];
  let mode = MODES.includes(initialMode) ? initialMode : 'on';
  const installed = {
    setMode(m) {
      if (!MODES.includes(m)) throw new Error('listing mode must be off, index or on, not ' + m);
      mode = m;
    },
  };
  const { Collection } = require('lokijs');
  const LokiBlobMetadataStore = require('./blob/persistence/LokiBlobMetadataStore').default;
  const PageWithDelimiter = require('./blob/persistence/PageWithDelimiter').default;
  const LeaseFactory = require('./blob/lease/LeaseFactory').default;
  const BlobLeaseAdapter = require('./blob/lease/BlobLeaseAdapter').default;
  const BlobLeaseSyncer = require('./blob/lease/BlobLeaseSyncer').default;
  const { DEFAULT_LIST_BLOBS_MAX_RESULTS } = require('./blob/utils/constants');

  // ---- The name index of a blob collection ----

  const compare = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id);
  /** The first position in list (from lo) whose entry is not before the given one by before(entry). */
  const search = (list, before, lo = 0) => {
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(list[mid])) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };

  class NameIndex {
    constructor(coll) {
      /** account → container → entries { name, id, account, container, doc } sorted by name, then $loki */
      this.accounts = new Map();
      /** $loki → entry */
      this.byId = new Map();
      this.broken = false;
      for (const doc of coll.data) this.insert(doc, false);
      for (const containers of this.accounts.values()) for (const list of containers.values()) list.sort(compare);
    }

    get size() {
      return this.byId.size;
    }

    list(account, container, create) {
      let containers = this.accounts.get(account);
      if (containers === undefined) {
        if (!create) return undefined;
        this.accounts.set(account, (containers = new Map()));
      }
      let list = containers.get(container);
      if (list === undefined && create) containers.set(container, (list = []));
      return list;
    }

    insert(doc, sorted = true) {
      if (doc === null || typeof doc !== 'object' || typeof doc.name !== 'string' || typeof doc.accountName !== 'string' || typeof doc.containerName !== 'string' || typeof doc.$loki !== 'number') {
        this.broken = true;
        return;
      }
      if (this.byId.has(doc.$loki)) this.removeId(doc.$loki);
      const entry = { name: doc.name, id: doc.$loki, account: doc.accountName, container: doc.containerName, doc };
      this.byId.set(entry.id, entry);
      const list = this.list(entry.account, entry.container, true);
      if (!sorted) {
        list.push(entry);
        return;
      }
      const at = search(list, (e) => compare(e, entry) < 0);
      if (at === list.length) list.push(entry);
      else list.splice(at, 0, entry);
    }

    removeId(id) {
      const entry = this.byId.get(id);
      if (entry === undefined) return;
      this.byId.delete(id);
      const list = this.list(entry.account, entry.container, false);
      const at = list === undefined ? -1 : search(list, (e) => compare(e, entry) < 0);
      if (at < 0 || list[at] !== entry) {
        this.broken = true;
        return;
      }
      list.splice(at, 1);
      if (list.length === 0) {
        const containers = this.accounts.get(entry.account);
        containers.delete(entry.container);
        if (containers.size === 0) this.accounts.delete(entry.account);
      }
    }

    /** The collection's document of this $loki now (an update may replace the object). */
    updated(doc) {
      if (doc === null || typeof doc !== 'object') {
        this.broken = true;
        return;
      }
      const entry = this.byId.get(doc.$loki);
      if (entry !== undefined && entry.name === doc.name && entry.account === doc.accountName && entry.container === doc.containerName) entry.doc = doc;
      else this.insert(doc);
    }
  }

  /** Blob collections that have been listed, and their indexes; kept up to date from then on. */
  const indexes = new WeakMap();
  /** How often an index was built from a whole collection (the first listing, or after losing count), and pages left to Azurite. */
  const stats = { builds: 0, fallbacks: 0 };
  const indexOf = (coll) => {
    let index = indexes.get(coll);
    if (index === undefined || index.broken || index.size !== coll.data.length) {
      stats.builds++;
      index = new NameIndex(coll);
      indexes.set(coll, index);
    }
    return index.broken ? undefined : index;
  };

  const add = Collection.prototype.add;
  Collection.prototype.add = function (obj) {
    const result = add.apply(this, arguments);
    const index = indexes.get(this);
    // add() stores obj itself (a clone, when the collection clones, was made before add).
    if (index !== undefined) index.insert(obj);
    return result;
  };
  const update = Collection.prototype.update;
  Collection.prototype.update = function (doc) {
    const result = update.apply(this, arguments);
    const index = indexes.get(this);
    // An array is updated one document at a time, through this method again.
    if (index !== undefined && doc !== null && typeof doc === 'object' && !Array.isArray(doc)) index.updated(this.get(doc.$loki));
    return result;
  };
  const removedIds = (coll, index, ids) => {
    try {
      for (const id of ids) if (id !== undefined && index.byId.has(id) && coll.get(id) === null) index.removeId(id);
    } catch {
      index.broken = true;
    }
  };
  const remove = Collection.prototype.remove;
  Collection.prototype.remove = function (doc) {
    const index = indexes.get(this);
    const id = index === undefined ? undefined : typeof doc === 'number' ? doc : doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? doc.$loki : undefined;
    const result = remove.apply(this, arguments);
    // An array goes through removeBatchByPositions.
    if (index !== undefined && id !== undefined) removedIds(this, index, [id]);
    return result;
  };
  const removeBatchByPositions = Collection.prototype.removeBatchByPositions;
  Collection.prototype.removeBatchByPositions = function (positions) {
    const index = indexes.get(this);
    const ids = index === undefined ? [] : positions.map((p) => this.data[p] && this.data[p].$loki);
    const result = removeBatchByPositions.apply(this, arguments);
    if (index !== undefined) removedIds(this, index, ids);
    return result;
  };
  const clear = Collection.prototype.clear;
  Collection.prototype.clear = function () {
    indexes.delete(this);
    return clear.apply(this, arguments);
  };

  // ---- A page ----

  /**
   * The page Azurite's listBlobs would make, from the index: [docs, prefixes, nextMarker], or
   * undefined where Azurite's own query must decide. includeSnapshots is false here.
   */
  const fastPage = (store, account, container, delimiter, prefix, maxResults, marker, includeUncommittedBlobs) => {
    const coll = store.db.getCollection(store.BLOBS_COLLECTION);
    if (!coll) return undefined;
    const index = indexOf(coll);
    if (index === undefined) return undefined;
    const list = index.list(account, container, false) || [];
    const page = new PageWithDelimiter(maxResults, delimiter, prefix);
    // Azurite's filter: a base blob (not a snapshot), committed unless uncommitted blobs are asked for.
    const listed = (entry) => {
      const doc = entry.doc;
      if (doc.name !== entry.name || doc.accountName !== entry.account || doc.containerName !== entry.container || typeof doc.snapshot !== 'string') throw STALE;
      return doc.snapshot.length === 0 && Boolean(includeUncommittedBlobs || doc.isCommitted);
    };
    const folds = delimiter !== undefined && delimiter.length === 1;
    let i = Math.max(search(list, (e) => e.name <= marker), search(list, (e) => e.name < prefix));
    let previous;
    try {
      for (; i < list.length; i++) {
        const entry = list[i];
        if (!entry.name.startsWith(prefix)) break;
        if (!listed(entry)) continue;
        // Two documents of one name: their order is Azurite's query's to decide.
        if (entry.name === previous) return undefined;
        previous = entry.name;
        if (!page.add(entry.name, entry.doc)) return [page.blobItems, page.prefixes(), page.latestMarker];
        if (!folds) continue;
        const at = entry.name.indexOf(delimiter, prefix.length);
        if (at < 0) continue;
        // Every later name of this folder folds into the same BlobPrefix; the last one becomes the marker.
        const folder = entry.name.slice(0, at + 1);
        const end = search(list, (e) => e.name.startsWith(folder), i + 1);
        for (let k = end - 1; k > i; k--) {
          if (!listed(list[k])) continue;
          page.add(list[k].name, list[k].doc);
          break;
        }
        i = end - 1;
      }
    } catch (err) {
      if (err !== STALE) throw err;
      index.broken = true;
      return undefined;
    }
    return [page.blobItems, page.prefixes(), ''];
  };
  const STALE = new Error('the name index is out of date');

  const listBlobs = LokiBlobMetadataStore.prototype.listBlobs;
  LokiBlobMetadataStore.prototype.listBlobs = async function (context, account, container, delimiter, blob, prefix = '', maxResults = DEFAULT_LIST_BLOBS_MAX_RESULTS, marker = '', includeSnapshots, includeUncommittedBlobs) {
    const covered = mode !== 'off' && blob === undefined && !includeSnapshots && typeof account === 'string' && typeof container === 'string' && typeof prefix === 'string' && typeof marker === 'string' &&
      (delimiter === undefined || (typeof delimiter === 'string' && delimiter !== '')) && Number.isSafeInteger(maxResults) && maxResults > 0;
    const found = covered ? fastPage(this, account, container, delimiter, prefix, maxResults, marker, includeUncommittedBlobs) : undefined;
    if (found === undefined) {
      if (mode !== 'off') stats.fallbacks++;
      return listBlobs.apply(this, arguments);
    }
    const [docs, prefixes, nextMarker] = found;
    // As Azurite's listBlobs does with the documents of its page.
    return [
      docs.map((doc) => {
        doc.properties.contentMD5 = this.restoreUint8Array(doc.properties.contentMD5);
        return LeaseFactory.createLeaseState(new BlobLeaseAdapter(doc), context).sync(new BlobLeaseSyncer(doc));
      }),
      prefixes,
      nextMarker,
    ];
  };
  installed.listBlobs = { original: listBlobs, fastPage, stats };

  // ---- The XML of a page ----

  const serializer = require('./blob/generated/utils/serializer');
  const specifications = require('./blob/generated/artifacts/specifications').default;
  const Operation = require('./blob/generated/artifacts/operation').default;

  const UNSUPPORTED = new Error('not rendered here');
  // xmlbuilder's checks for XML 1.0 (XMLStringifier.assertLegalChar, assertLegalName).
  const ILLEGAL = /[\0-\x08\x0B\f\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/;
  const NAME = /^([:A-Z_a-z\xC0-\xD6\xD8-\xF6\xF8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C\u200D\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]|[\uD800-\uDB7F][\uDC00-\uDFFF])([\x2D\.0-:A-Z_a-z\xB7\xC0-\xD6\xD8-\xF6\xF8-\u037D\u037F-\u1FFF\u200C\u200D\u203F\u2040\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]|[\uD800-\uDB7F][\uDC00-\uDFFF])*$/;
  const legal = (s) => {
    if (ILLEGAL.test(s)) throw UNSUPPORTED;
    return s;
  };
  // xmlbuilder's textEscape and attEscape.
  const text = (s) => legal(/[&<>\r]/.test(s) ? s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#xD;') : s);
  const attribute = (s) =>
    legal(/[&<"\t\n\r]/.test(s) ? s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;').replace(/\t/g, '&#x9;').replace(/\n/g, '&#xA;').replace(/\r/g, '&#xD;') : s);

  /**
   * A composite mapper, described once: its properties in ms-rest-js's order with what rendering
   * each needs, or null when it has something the walk does not cover (its answers go to Azurite).
   */
  const described = new WeakMap();
  const SCALARS = new Set(['String', 'Number', 'Boolean', 'Enum', 'DateTimeRfc1123', 'ByteArray']);
  const plain = (m) => m.defaultValue === undefined && !m.isConstant && m.constraints === undefined;
  const describe = (modelMappers, mapper) => {
    let d = described.get(mapper);
    if (d === undefined) {
      d = null;
      const type = mapper.type;
      const model = type.modelProperties ? mapper : modelMappers[type.className];
      const polymorphic = type.polymorphicDiscriminator || (model && model.type.polymorphicDiscriminator) || (modelMappers[mapper.serializedName] && modelMappers[mapper.serializedName].type.polymorphicDiscriminator);
      if (model && model.type.modelProperties && !polymorphic && plain(mapper)) {
        const props = model.type.modelProperties;
        const keys = Object.keys(props);
        const list = keys.map((key) => {
          const p = props[key];
          const kind = SCALARS.has(p.type.name) ? 'scalar' : p.type.name === 'Composite' ? 'composite' : p.type.name === 'Sequence' && p.type.element && p.type.element.type.name === 'Composite' && plain(p.type.element) && !p.type.element.required ? 'sequence' : 'other';
          const allowed = p.type.name === 'Enum' && Array.isArray(p.type.allowedValues) && p.type.allowedValues.every((a) => typeof a === 'string') ? new Set(p.type.allowedValues.map((a) => a.toLowerCase())) : undefined;
          return {
            key,
            mapper: p,
            typeName: p.type.name,
            kind: p.type.name === 'Enum' && !allowed ? 'other' : kind,
            allowed,
            required: p.required,
            nullable: p.nullable,
            readOnly: Boolean(p.readOnly),
            name: p.xmlIsWrapped ? p.xmlName : p.xmlElementName || p.xmlName,
            attribute: Boolean(p.xmlIsAttribute),
            wrapped: Boolean(p.xmlIsWrapped),
            entryName: p.xmlElementName,
            plain: plain(p) && (p.xmlIsAttribute ? SCALARS.has(p.type.name) : true),
          };
        });
        const extra = type.additionalProperties;
        if (list.every((q) => q.plain && q.name != undefined) && (!extra || (SCALARS.has(extra.type.name) && extra.type.name !== 'Enum' && plain(extra)))) {
          d = { props: list, keys: new Set(keys), extra: extra ? { typeName: extra.type.name, required: extra.required, nullable: extra.nullable } : undefined };
        }
      }
      described.set(mapper, d);
    }
    if (d === null) throw UNSUPPORTED;
    return d;
  };

  /** ms-rest-js's Serializer.serialize refuses an undefined or null value here (the answer fails): leave it to Azurite. */
  const refused = (q, v) => (q.required && q.nullable && v === undefined) || (q.required && !q.nullable && v == undefined) || (!q.required && q.nullable === false && v === null);

  let lastTime = NaN;
  let lastUtc = '';
  /** A scalar as ms-rest-js serializes it and xml2js prints it (toString()). */
  const scalar = (q, v) => {
    switch (q.typeName) {
      case 'String':
        if (typeof v !== 'string') throw UNSUPPORTED;
        return v;
      case 'Number':
        if (typeof v !== 'number') throw UNSUPPORTED;
        return String(v);
      case 'Boolean':
        if (typeof v !== 'boolean') throw UNSUPPORTED;
        return v ? 'true' : 'false';
      case 'Enum':
        if (typeof v !== 'string' || !q.allowed.has(v.toLowerCase())) throw UNSUPPORTED;
        return v;
      case 'DateTimeRfc1123':
        if (v instanceof Date) {
          // A blob's dates are mostly one instant (created, modified, tier set): format it once.
          const t = v.getTime();
          if (t === lastTime) return lastUtc;
          lastTime = t;
          return (lastUtc = v.toUTCString());
        }
        if (typeof v === 'string' && !isNaN(Date.parse(v))) return new Date(v).toUTCString();
        throw UNSUPPORTED;
      case 'ByteArray':
        if (!(v instanceof Uint8Array)) throw UNSUPPORTED;
        // ms-rest-js's encodeByteArray: the whole buffer of a Uint8Array that is not a Buffer.
        return (v instanceof Buffer ? v : Buffer.from(v.buffer)).toString('base64');
      default:
        throw UNSUPPORTED;
    }
  };

  /** An element of text as xmlbuilder prints it: <name/> when the text is empty. */
  const textElement = (name, s) => (s === '' ? '<' + name + '/>' : '<' + name + '>' + text(s) + '</' + name + '>');
  const wrap = (name, attributes, body) => (body === '' ? '<' + name + attributes + '/>' : '<' + name + attributes + '>' + body + '</' + name + '>');

  /** A present value of a property, as xml2js renders what ms-rest-js makes of it, under name. */
  const value = (modelMappers, q, v, name) => {
    if (q.kind === 'scalar') return textElement(name, scalar(q, v));
    if (q.kind === 'composite') return composite(modelMappers, q.mapper, v, name);
    if (q.kind !== 'sequence' || !Array.isArray(v)) throw UNSUPPORTED;
    let out = '';
    for (let i = 0; i < v.length; i++) {
      const entry = v[i];
      if (entry === undefined || entry === null) throw UNSUPPORTED;
      out += composite(modelMappers, q.mapper.type.element, entry, name);
    }
    return out;
  };

  const composite = (modelMappers, mapper, object, name) => {
    if (typeof object !== 'object' || Array.isArray(object)) throw UNSUPPORTED;
    const d = describe(modelMappers, mapper);
    let attributes = '';
    let body = '';
    // The names of the elements so far, when names of additional properties could repeat one.
    const names = d.extra ? new Set() : undefined;
    for (const q of d.props) {
      if (q.readOnly) continue;
      const v = object[q.key];
      if (v === undefined || v === null) {
        if (refused(q, v)) throw UNSUPPORTED;
        // ms-rest-js keeps a null; xml2js prints an empty element (a wrapped one around an empty entry).
        if (v === null && !q.attribute) {
          body += q.wrapped ? '<' + q.name + '><' + q.entryName + '/></' + q.name + '>' : '<' + q.name + '/>';
          if (names) names.add(q.name);
        }
        continue;
      }
      if (q.kind === 'other') throw UNSUPPORTED;
      if (q.attribute) {
        attributes += ' ' + q.name + '="' + attribute(scalar(q, v)) + '"';
        continue;
      }
      if (names) names.add(q.name);
      body += q.wrapped ? wrap(q.name, '', value(modelMappers, q, v, q.entryName)) : value(modelMappers, q, v, q.name);
    }
    if (d.extra) {
      for (const k in object) {
        if (d.keys.has(k)) continue;
        if (k === '$' || k === '_' || names.has(k) || !NAME.test(k) || ILLEGAL.test(k)) throw UNSUPPORTED;
        const v = object[k];
        // ms-rest-js stores even an undefined one; xml2js prints undefined and null as empty.
        if (v === undefined || v === null) {
          if (refused(d.extra, v)) throw UNSUPPORTED;
          body += '<' + k + '/>';
        } else body += textElement(k, scalar(d.extra, v));
      }
    }
    return wrap(name, attributes, body);
  };

  const DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>';
  /** The XML of a List Blobs answer, byte for byte as Azurite's serializer writes it, or undefined. */
  const listXml = (spec, handlerResponse) => {
    const bodyMapper = spec.responses[200].bodyMapper;
    try {
      if (handlerResponse === undefined || handlerResponse === null || bodyMapper.type.name !== 'Composite' || !plain(bodyMapper) || bodyMapper.required) return undefined;
      return DECLARATION + composite(spec.serializer.modelMappers, bodyMapper, handlerResponse, bodyMapper.xmlName || bodyMapper.serializedName);
    } catch (err) {
      if (err === UNSUPPORTED) return undefined;
      throw err;
    }
  };

  const fast = new Map();
  for (const operation of [Operation.Container_ListBlobFlatSegment, Operation.Container_ListBlobHierarchySegment]) {
    const spec = specifications[operation];
    const ok = spec.responses[200];
    // The same specification without a body: Azurite's serializer then writes the headers only.
    fast.set(operation, { spec, headersOnly: { ...spec, responses: { ...spec.responses, 200: { ...ok, bodyMapper: undefined } } } });
  }
  const serialize = serializer.serialize;
  serializer.serialize = async function (context, res, spec, handlerResponse, logger) {
    const op = fast.get(context.operation);
    if (mode === 'on' && op !== undefined && spec === op.spec && handlerResponse && handlerResponse.statusCode === 200 && spec.isXML) {
      let xml;
      try {
        xml = listXml(spec, handlerResponse);
      } catch {
        xml = undefined;
      }
      if (xml !== undefined) {
        await serialize.call(this, context, res, op.headersOnly, handlerResponse, logger);
        res.setContentType('application/xml');
        res.getBodyStream().write(xml);
        return;
      }
    }
    return serialize.apply(this, arguments);
  };
  installed.xml = { listXml, original: serialize };
  return installed;
})
`;
