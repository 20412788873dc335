# A small stand-in for nixpkgs' lib: the module system (evalModules, mkOption, mkIf, mkMerge,
# mkOverride/mkDefault/mkForce, mkOrder/mkBefore/mkAfter, option types) and the helpers that
# nixos-module/default.nix and the stand-in option tree use. Full nixpkgs cannot be fetched in CI;
# run.sh runs the same assertions against nixpkgs' real lib/ with NIXPKGS_LIB=DIR.
#
# Semantics follow nixpkgs where the module depends on them: mkIf conditions are pushed down
# into attribute sets (so a module may guard its whole `config` with its own enable option),
# the lowest priority number wins, definitions are sorted by mkOrder (stable), unknown options
# and ill-typed values are errors, and attrsOf/listOf drop elements whose mkIf is false.
let
  inherit (builtins)
    all any attrNames concatLists concatMap concatStringsSep elem filter foldl' functionArgs head
    intersectAttrs isAttrs isBool isFloat isFunction isInt isList isPath isString length
    listToAttrs map mapAttrs match sort substring stringLength tail toJSON typeOf zipAttrsWith;

  last = l: builtins.elemAt l (length l - 1);
  showLoc = loc: concatStringsSep "." loc;
  showVal = v:
    let r = builtins.tryEval (if isFunction v then "<function>" else toJSON v);
    in if r.success then r.value else "<${typeOf v}>";

  # Properties -------------------------------------------------------------------------------
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkOrder = priority: content: { _type = "order"; inherit priority content; };

  # One definition -> [{ value; priority; order; }], evaluating mkIf conditions.
  flatten = prio: ord: v:
    let t = if isAttrs v then v._type or null else null; in
    if t == "merge" then concatMap (flatten prio ord) v.contents
    else if t == "if" then
      (if !isBool v.condition then throw "mkIf called with a non-Boolean condition"
      else if v.condition then flatten prio ord v.content else [ ])
    else if t == "override" then flatten v.priority ord v.content
    else if t == "order" then flatten prio v.priority v.content
    else [{ value = v; priority = prio; order = ord; }];

  # A definition of an attribute set -> { name = [ definitions ]; } without evaluating any
  # mkIf condition (they are pushed down to the values).
  pushDown = v:
    let t = v._type or null; in
    if t == "merge" then zipAttrsWith (_: concatLists) (map pushDown v.contents)
    else if t == "if" then mapAttrs (_: map (mkIf v.condition)) (pushDown v.content)
    else if t == "override" then mapAttrs (_: map (mkOverride v.priority)) (pushDown v.content)
    else if t == "order" then mapAttrs (_: map (mkOrder v.priority)) (pushDown v.content)
    else if isAttrs v then mapAttrs (_: x: [ x ]) v
    else throw "a module defines a non-attribute-set value where options are expected: ${showVal v}";

  # Merging ----------------------------------------------------------------------------------
  mergeFlat = loc: type: flat:
    let
      prio = foldl' (a: d: if d.priority < a then d.priority else a) 100000 flat;
      chosen = sort (a: b: a.order < b.order) (filter (d: d.priority == prio) flat);
      values = map (d: d.value) chosen;
      bad = filter (v: !(type.check v)) values;
    in
    if chosen == [ ] then throw "The option `${showLoc loc}' is used but not defined."
    else if bad != [ ] then
      throw "A definition for option `${showLoc loc}' is not of type `${type.description}'. Definition value: ${showVal (head bad)}"
    else type.merge loc values;

  isOption = x: isAttrs x && x._type or null == "option";

  mergeDecls = loc: decls: zipAttrsWith
    (n: vs:
      if any isOption vs then
        (if length vs == 1 then head vs
        else throw "The option `${showLoc (loc ++ [ n ])}' is declared in more than one module.")
      else mergeDecls (loc ++ [ n ]) vs)
    decls;

  evalTree = loc: decls: defs:
    let
      pushed = zipAttrsWith (_: concatLists) (map pushDown defs);
      unknown = filter (n: !(decls ? ${n})) (attrNames pushed);
    in
    if unknown != [ ] then throw "The option `${showLoc (loc ++ [ (head unknown) ])}' does not exist."
    else
      mapAttrs
        (n: d:
          if isOption d then evalOption (loc ++ [ n ]) d (pushed.${n} or [ ])
          else evalTree (loc ++ [ n ]) d (pushed.${n} or [ ]))
        decls;

  evalOption = loc: opt: defs:
    let
      type = opt.type or types.unspecified;
      flat = concatMap (flatten 100 1000) defs
        ++ (if opt ? default then flatten 1500 1000 opt.default else [ ]);
    in
    (opt.apply or (x: x)) (mergeFlat loc type flat);

  evalModules = { modules, specialArgs ? { }, prefix ? [ ] }:
    let
      args = specialArgs // { inherit config options lib; };
      call = m:
        if isPath m || isString m then call (import m)
        else if isFunction m then m (intersectAttrs (functionArgs m) args)
        else m;
      normalise = m:
        let r = call m; in
        if r ? config || r ? options then
          { imports = r.imports or [ ]; options = r.options or { }; config = r.config or { }; }
        else
          { imports = r.imports or [ ]; options = { }; config = removeAttrs r [ "imports" "_file" "key" "meta" ]; };
      collect = ms: concatMap (m: let n = normalise m; in [ n ] ++ collect n.imports) ms;
      all' = collect modules;
      options = mergeDecls prefix (map (m: m.options) all');
      config = evalTree prefix options (map (m: m.config) all');
    in
    { inherit config options; };

  # Types ------------------------------------------------------------------------------------
  mergeEqualOption = loc: values: foldl'
    (a: b:
      if a == b then a
      else throw "The option `${showLoc loc}' has conflicting definition values: ${showVal a} and ${showVal b}")
    (head values)
    (tail values);
  mergeOneOption = loc: values:
    if length values == 1 then head values
    else throw "The unique option `${showLoc loc}' is defined multiple times.";

  mkOptionType = { name, description ? name, check ? (_: true), merge ? mergeEqualOption }:
    { _type = "option-type"; inherit name description check merge; };

  isDerivation = x: isAttrs x && x.type or null == "derivation";

  types = rec {
    unspecified = mkOptionType {
      name = "unspecified";
      merge = loc: values:
        if all isList values then concatLists values
        else if all isAttrs values then foldl' (a: b: a // b) { } values
        else mergeEqualOption loc values;
    };
    anything = unspecified;
    raw = mkOptionType { name = "raw"; merge = mergeOneOption; };
    bool = mkOptionType { name = "bool"; description = "boolean"; check = isBool; };
    int = mkOptionType { name = "int"; description = "signed integer"; check = isInt; };
    float = mkOptionType { name = "float"; description = "floating point number"; check = isFloat; };
    number = either int float;
    ints = {
      positive = mkOptionType { name = "positiveInt"; description = "positive integer, meaning >0"; check = x: isInt x && x > 0; };
      unsigned = mkOptionType { name = "unsignedInt"; description = "unsigned integer, meaning >=0"; check = x: isInt x && x >= 0; };
    };
    port = mkOptionType { name = "port"; description = "16 bit unsigned integer"; check = x: isInt x && x >= 0 && x < 65536; };
    str = mkOptionType { name = "str"; description = "string"; check = isString; };
    nonEmptyStr = mkOptionType { name = "nonEmptyStr"; description = "non-empty string"; check = x: isString x && match "[[:space:]]*" x == null; };
    singleLineStr = mkOptionType { name = "singleLineStr"; description = "(optionally newline-terminated) single-line string"; check = x: isString x && match "[^\n]*\n?" x != null; };
    lines = mkOptionType { name = "lines"; description = "strings concatenated with \"\\n\""; check = isString; merge = _: concatStringsSep "\n"; };
    strMatching = re: mkOptionType { name = "strMatching ${toJSON re}"; description = "string matching the pattern ${re}"; check = x: isString x && match re x != null; };
    enum = vs: mkOptionType { name = "enum"; description = "one of ${concatStringsSep ", " (map toJSON vs)}"; check = x: elem x vs; };
    path = mkOptionType {
      name = "path";
      check = x: (isString x || isPath x || (isAttrs x && x ? outPath)) && substring 0 1 (toString x) == "/";
      merge = mergeEqualOption;
    };
    package = mkOptionType { name = "package"; check = x: isDerivation x; merge = mergeOneOption; };
    attrs = mkOptionType { name = "attrs"; description = "attribute set"; check = isAttrs; merge = _: foldl' (a: b: a // b) { }; };
    nullOr = t: mkOptionType {
      name = "nullOr";
      description = "null or ${t.description}";
      check = x: x == null || t.check x;
      merge = loc: values:
        if all (v: v == null) values then null
        else if any (v: v == null) values then throw "The option `${showLoc loc}' is defined both null and not null."
        else t.merge loc values;
    };
    either = a: b: mkOptionType {
      name = "either";
      description = "${a.description} or ${b.description}";
      check = x: a.check x || b.check x;
      merge = loc: values:
        if all a.check values then a.merge loc values
        else if all b.check values then b.merge loc values
        else mergeOneOption loc values;
    };
    oneOf = ts: foldl' either (head ts) (tail ts);
    listOf = t: mkOptionType {
      name = "listOf";
      description = "list of ${t.description}";
      check = isList;
      merge = loc: values: concatMap
        (e: let f = flatten 100 1000 e; in if f == [ ] then [ ] else [ (mergeFlat loc t f) ])
        (concatLists values);
    };
    attrsOf = t: mkOptionType {
      name = "attrsOf";
      description = "attribute set of ${t.description}";
      check = isAttrs;
      merge = loc: values:
        let
          flat = zipAttrsWith (_: vs: concatMap (flatten 100 1000) vs) values;
          present = listToAttrs (concatMap (n: if flat.${n} == [ ] then [ ] else [{ name = n; value = flat.${n}; }]) (attrNames flat));
        in
        mapAttrs (n: mergeFlat (loc ++ [ n ]) t) present;
    };
    lazyAttrsOf = attrsOf;
    submoduleWith = { modules, specialArgs ? { } }: mkOptionType {
      name = "submodule";
      check = x: isAttrs x || isFunction x || isPath x;
      merge = loc: values: (evalModules {
        modules = modules ++ values;
        specialArgs = specialArgs // { name = last loc; };
        prefix = loc;
      }).config;
    };
    submodule = m: submoduleWith { modules = if isList m then m else [ m ]; };
  };

  lib = {
    inherit mkIf mkMerge mkOverride mkOrder evalModules mkOptionType types isDerivation
      mergeEqualOption mergeOneOption last;
    inherit (builtins) all any attrNames attrValues concatLists concatMap concatStringsSep elem
      elemAt filter foldl' head length listToAttrs mapAttrs match replaceStrings tail toJSON;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkBefore = mkOrder 500;
    mkAfter = mkOrder 1500;
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: lib.mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = "Whether to enable ${name}.";
    };
    mkPackageOption = _pkgs: name: { default ? [ name ], ... }: lib.mkOption {
      type = types.package;
      default = foldl' (a: n: a.${n}) _pkgs default;
      description = "The ${name} package to use.";
    };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    literalMD = text: { _type = "literalMD"; inherit text; };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalAttrs = c: a: if c then a else { };
    optionalString = c: s: if c then s else "";
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    filterAttrs = pred: set: listToAttrs (concatMap
      (n: if pred n set.${n} then [{ name = n; value = set.${n}; }] else [ ])
      (attrNames set));
    concatStrings = concatStringsSep "";
    attrByPath = path: default: set:
      if path == [ ] then set
      else if isAttrs set && set ? ${head path} then lib.attrByPath (tail path) default set.${head path}
      else default;
    removePrefix = p: s:
      if lib.hasPrefix p s then substring (stringLength p) (stringLength s - stringLength p) s else s;
    cleanSourceWith = { src, filter ? (_: _: true), name ? "source" }:
      builtins.path { path = src; inherit filter name; };
    licenses.agpl3Plus = { spdxId = "AGPL-3.0-or-later"; };
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    concatMapStrings = f: l: concatStringsSep "" (map f l);
    concatMapStringsSep = sep: f: l: concatStringsSep sep (map f l);
    concatLines = l: concatStringsSep "" (map (s: s + "\n") l);
    hasPrefix = p: s: substring 0 (stringLength p) s == p;
    hasSuffix = s: str:
      let ls = stringLength s; lstr = stringLength str;
      in lstr >= ls && substring (lstr - ls) ls str == s;
    splitString = sep: s: filter isString (builtins.split (lib.escapeRegex sep) s);
    escapeRegex = builtins.replaceStrings
      [ "\\" "[" "]" "{" "}" "(" ")" "^" "$" "." "*" "+" "?" "|" ]
      [ "\\\\" "\\[" "\\]" "\\{" "\\}" "\\(" "\\)" "\\^" "\\$" "\\." "\\*" "\\+" "\\?" "\\|" ];
    trim = s:
      let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
      in if m == null then "" else head m;
    flatten = x: if isList x then concatMap lib.flatten x else [ x ];
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    recursiveUpdate = a: b: zipAttrsWith
      (_: vs:
        if length vs == 2 && isAttrs (head vs) && isAttrs (last vs) && !(isDerivation (last vs))
        then lib.recursiveUpdate (head vs) (last vs) else last vs) [ a b ];
  };
in
lib
