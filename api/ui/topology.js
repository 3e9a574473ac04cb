// vpcd topology page: draws one VPC from the public REST API as plain SVG.
//
// Every string that comes from the API (names, tags, details) reaches the DOM only through
// textContent or setAttribute on elements made with createElement/createElementNS: never
// by parsing markup. The token lives in sessionStorage (this tab only); a URL fragment
// `#token=...&vpc=...` is accepted once and the token is then removed from the address.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const API_BASE = new URL("../v1/", document.baseURI);
  const TOKEN_KEY = "vpcd.token";
  const REFRESH_MS = 5000;
  const PAGE_SIZE = 500;
  const MAX_PAGES = 200;

  // Layout (px)
  const MARGIN = 24;
  const COL_W = 270;
  const COL_GAP = 36;
  const TITLE_H = 44;
  const ROUTER_W = 230;
  const ROUTER_H = 68;
  const ROUTER_GAP = 24;
  const LEG_SPACE = 84;
  const SUBNET_HEAD_H = 66;
  const GROUP_HEAD_H = 24;
  const GROUP_PAD = 8;
  const PORT_H = 44;
  const FIP_H = 22;
  const ITEM_GAP = 8;
  const SG_W = 210;
  const SG_H = 48;
  // Average glyph widths per text class, to shorten labels that would overflow their box
  const CHAR_W = { name: 8.2, title: 11, cidr: 9.5, sub: 6.8, fip: 7, host: 7.4, default: 7.2 };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    vpcId: null,
    vpcs: [],
    vpcSignature: "",
    model: null,
    selected: null, // "kind:id"
    pinned: false,
    timer: null,
    busy: false,
    again: false,
    pageSize: PAGE_SIZE,
  };

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, detail, path) {
      super(`${path}: ${status} ${detail}`);
      this.status = status;
      this.detail = detail;
    }
  }

  // -- DOM helpers (text only) -------------------------------------------------------------

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fit(value, width, cls = "default") {
    const s = String(value ?? "");
    const max = Math.max(4, Math.floor(width / (CHAR_W[cls] || CHAR_W.default)));
    return s.length > max ? s.slice(0, max - 1) + "…" : s;
  }

  function short(id) {
    return String(id ?? "").slice(0, 8);
  }

  function showMessage(text, kind = "error") {
    const box = $("message");
    box.textContent = text;
    box.className = kind;
    box.hidden = !text;
  }

  // -- API -----------------------------------------------------------------------------------

  async function api(path, params = {}) {
    const url = new URL(path, API_BASE);
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null) url.searchParams.set(k, v);
    }
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) throw new AuthError("the API refused the token");
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const problem = await response.json();
        detail = problem.detail || problem.title || detail;
      } catch (_) {
        // not a problem document
      }
      throw new ApiError(response.status, detail, url.pathname);
    }
    return response.json();
  }

  async function listAll(path, params = {}) {
    const items = [];
    let pageToken = null;
    for (let i = 0; i < MAX_PAGES; i++) {
      const body = await api(path, { ...params, limit: state.pageSize, page_token: pageToken });
      items.push(...body.items);
      pageToken = body.next_page_token;
      if (!pageToken) return items;
    }
    throw new Error(`${path}: more than ${MAX_PAGES} pages`);
  }

  async function listOptional(path) {
    // Resources a server may not offer yet (load balancers): 404 means "not here".
    try {
      return await listAll(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  }

  // -- the model -----------------------------------------------------------------------------

  function statusOf(obj) {
    if (obj.status === "active" || obj.status === "pending" || obj.status === "error") {
      return obj.status;
    }
    const prov = String(obj.provisioning_status || "").toUpperCase();
    const oper = String(obj.operating_status || "").toUpperCase();
    if (prov === "ERROR" || oper === "ERROR") return "error";
    if (prov.startsWith("PENDING")) return "pending";
    if (prov === "ACTIVE") return "active";
    return "pending";
  }

  async function loadVpc(vpcId) {
    const [subnets, routers, groups, fips, lbs] = await Promise.all([
      listAll("subnets", { vpc_id: vpcId }),
      listAll("routers", { vpc_id: vpcId }),
      listAll("security-groups", { vpc_id: vpcId }),
      listAll("floating-ips"),
      listOptional("load-balancers"),
    ]);
    const portLists = await Promise.all(
      subnets.map((s) => listAll("ports", { subnet_id: s.id })),
    );
    const ifaceLists = await Promise.all(
      routers.map((r) => api(`routers/${encodeURIComponent(r.id)}/interfaces`)),
    );
    return buildModel(vpcId, subnets, portLists.flat(), routers, ifaceLists, groups, fips, lbs);
  }

  function buildModel(vpcId, subnets, allPorts, routers, ifaceLists, groups, fips, lbs) {
    const subnetIds = new Set(subnets.map((s) => s.id));
    // Workloads only: ports the service made (router legs, DHCP/DNS) are not drawn as ports.
    const ports = allPorts.filter((p) => p.device_owner === "");
    const legPorts = new Map(
      allPorts.filter((p) => p.device_owner === "router_interface").map((p) => [p.id, p]),
    );
    const portIds = new Set(ports.map((p) => p.id));
    const routerIds = new Set(routers.map((r) => r.id));
    const subnetNames = new Map(subnets.map((s) => [s.id, s.name || s.cidr]));
    const legs = [];
    routers.forEach((r, i) => {
      for (const iface of ifaceLists[i] || []) {
        if (!subnetIds.has(iface.subnet_id)) continue;
        const port = legPorts.get(iface.port_id);
        legs.push({
          id: `${r.id}:${iface.subnet_id}`,
          name: `${r.name || short(r.id)} → ${subnetNames.get(iface.subnet_id)}`,
          router_id: r.id,
          subnet_id: iface.subnet_id,
          port_id: iface.port_id,
          ip_address: iface.ip_address,
          host: port ? port.host : r.host,
          status: port ? port.status : r.status,
          status_detail: port ? port.status_detail : r.status_detail,
        });
      }
    });
    const vpcFips = fips.filter((f) => portIds.has(f.port_id) || routerIds.has(f.router_id));
    const fipByPort = new Map(vpcFips.filter((f) => f.port_id).map((f) => [f.port_id, f]));
    const members = new Map(groups.map((g) => [g.id, 0]));
    for (const p of ports) {
      for (const g of p.security_group_ids || []) {
        if (members.has(g)) members.set(g, members.get(g) + 1);
      }
    }
    const loadBalancers = (lbs || []).filter(
      (lb) => lb.vpc_id === vpcId || subnetIds.has(lb.vip_subnet_id),
    );
    return {
      vpc: state.vpcs.find((v) => v.id === vpcId) || { id: vpcId, name: "", cidr: "" },
      subnets,
      ports,
      routers,
      legs,
      fips: vpcFips,
      fipByPort,
      groups,
      members,
      groupNames: new Map(groups.map((g) => [g.id, g.name || short(g.id)])),
      loadBalancers,
      lbSupported: lbs !== null,
    };
  }

  // -- drawing -------------------------------------------------------------------------------

  function describe(kind, obj, extra = []) {
    const lines = [`${kind} ${obj.name || short(obj.id)}`, `id: ${obj.id}`];
    for (const [k, v] of extra) if (v !== undefined && v !== null && v !== "") lines.push(`${k}: ${v}`);
    const status = statusOf(obj);
    lines.push(`status: ${status}`);
    if (obj.status_detail) lines.push(`detail: ${obj.status_detail}`);
    return lines.join("\n");
  }

  function node(kind, obj, fields) {
    const status = statusOf(obj);
    const g = svg("g", {
      class: `node kind-${kind} st-${status}`,
      "data-kind": kind,
      "data-id": obj.id,
      "data-status": status,
      tabindex: 0,
      role: "button",
    });
    g.appendChild(svg("title", {}, describe(kind.replace("_", " "), obj, fields)));
    const key = `${kind}:${obj.id}`;
    g.addEventListener("mouseenter", () => state.pinned || select(key, false));
    g.addEventListener("focus", () => select(key, false));
    g.addEventListener("click", (ev) => {
      ev.stopPropagation();
      select(key, true);
    });
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        select(key, true);
      }
    });
    g.__vpcd = { kind, obj, fields };
    return g;
  }

  function box(g, x, y, w, h, rx = 6) {
    g.appendChild(svg("rect", { class: "box", x, y, width: w, height: h, rx }));
  }

  function dot(g, x, y) {
    g.appendChild(svg("circle", { class: "dot", cx: x, cy: y, r: 5 }));
  }

  function label(g, x, y, text, cls, width) {
    g.appendChild(svg("text", { x, y, class: cls }, width ? fit(text, width, cls) : text));
  }

  function layoutColumns(model) {
    // Per subnet column: host groups of ports (unbound last), then load balancers.
    return model.subnets.map((subnet) => {
      const byHost = new Map();
      for (const p of model.ports) {
        if (p.subnet_id !== subnet.id) continue;
        const host = p.host || "";
        if (!byHost.has(host)) byHost.set(host, []);
        byHost.get(host).push(p);
      }
      const hosts = [...byHost.keys()].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
      const groups = hosts.map((host) => ({
        host,
        ports: byHost.get(host).sort((a, b) => a.ip_address.localeCompare(b.ip_address, undefined, { numeric: true })),
      }));
      const lbs = model.loadBalancers.filter((lb) => lb.vip_subnet_id === subnet.id);
      let height = SUBNET_HEAD_H + GROUP_PAD;
      for (const group of groups) {
        height += GROUP_HEAD_H + GROUP_PAD;
        for (const p of group.ports) height += PORT_H + (model.fipByPort.has(p.id) ? FIP_H : 0) + ITEM_GAP;
        height += GROUP_PAD;
      }
      if (lbs.length) height += GROUP_HEAD_H + GROUP_PAD + lbs.length * (PORT_H + ITEM_GAP) + GROUP_PAD;
      if (!groups.length && !lbs.length) height += 28;
      return { subnet, groups, lbs, height: height + GROUP_PAD };
    });
  }

  function placeRouters(model, colX) {
    // Each router sits above the middle of the subnets it has legs on; no overlaps.
    const wanted = model.routers.map((r, i) => {
      const xs = model.legs.filter((l) => l.router_id === r.id).map((l) => colX.get(l.subnet_id) + COL_W / 2);
      const centre = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : MARGIN + i * (ROUTER_W + ROUTER_GAP) + ROUTER_W / 2;
      return { router: r, centre };
    });
    wanted.sort((a, b) => a.centre - b.centre || a.router.id.localeCompare(b.router.id));
    let right = MARGIN - ROUTER_GAP;
    const placed = new Map();
    for (const w of wanted) {
      const x = Math.max(w.centre - ROUTER_W / 2, right + ROUTER_GAP, MARGIN);
      placed.set(w.router.id, x);
      right = x + ROUTER_W;
    }
    return { placed, right };
  }

  function draw(model) {
    const root = svg("svg", { id: "topology", xmlns: SVG_NS, "data-vpc": model.vpc.id });
    const columns = layoutColumns(model);
    const colX = new Map();
    columns.forEach((c, i) => colX.set(c.subnet.id, MARGIN + i * (COL_W + COL_GAP)));
    const { placed, right: routersRight } = placeRouters(model, colX);

    const routerY = TITLE_H;
    const subnetY = model.routers.length ? routerY + ROUTER_H + LEG_SPACE : TITLE_H;
    const columnsBottom = subnetY + Math.max(0, ...columns.map((c) => c.height));
    let width = Math.max(
      MARGIN + columns.length * (COL_W + COL_GAP) - COL_GAP + MARGIN,
      routersRight + MARGIN,
      720,
    );

    // VPC title
    const vpc = model.vpc;
    const title = svg("g", { class: "vpc-title", "data-kind": "vpc", "data-id": vpc.id });
    const heading = svg("text", { x: MARGIN, y: 26, class: "title" });
    heading.appendChild(svg("tspan", {}, `VPC ${fit(vpc.name || short(vpc.id), 480, "title")}`));
    heading.appendChild(svg("tspan", { class: "title-cidr", dx: 12 }, vpc.cidr || ""));
    title.appendChild(heading);
    root.appendChild(title);

    const layers = {
      legs: svg("g", { class: "layer-legs" }),
      subnets: svg("g", { class: "layer-subnets" }),
      routers: svg("g", { class: "layer-routers" }),
      groups: svg("g", { class: "layer-groups" }),
    };

    // Subnet columns with their host groups, ports, floating IPs and load balancers
    for (const col of columns) {
      const x = colX.get(col.subnet.id);
      drawSubnet(layers.subnets, model, col, x, subnetY);
    }

    // Routers and their legs
    for (const r of model.routers) {
      const x = placed.get(r.id);
      const legs = model.legs.filter((l) => l.router_id === r.id);
      legs.sort((a, b) => colX.get(a.subnet_id) - colX.get(b.subnet_id));
      legs.forEach((leg, i) => {
        const fromX = x + (ROUTER_W * (i + 1)) / (legs.length + 1);
        const fromY = routerY + ROUTER_H;
        const toX = colX.get(leg.subnet_id) + COL_W / 2;
        const toY = subnetY;
        const g = node("leg", leg, [
          ["router", r.name || short(r.id)],
          ["subnet", leg.subnet_id],
          ["gateway", leg.ip_address],
          ["host", leg.host],
        ]);
        const mid = (fromY + toY) / 2;
        g.appendChild(svg("path", { class: "wire", d: `M${fromX},${fromY} C${fromX},${mid} ${toX},${mid} ${toX},${toY}` }));
        g.appendChild(svg("path", { class: "wire-hit", d: `M${fromX},${fromY} C${fromX},${mid} ${toX},${mid} ${toX},${toY}` }));
        g.appendChild(svg("circle", { class: "dot", cx: toX, cy: toY, r: 4.5 }));
        label(g, toX + 8, toY - 8, leg.ip_address, "leg-label");
        layers.legs.appendChild(g);
      });
      const fields = [
        ["host", r.host || "unscheduled"],
        ["external IP", r.external_ip],
        ["SNAT", r.external_network_id ? (r.enable_snat ? "on" : "off") : undefined],
        ["routes", (r.routes || []).map((rt) => `${rt.destination} via ${rt.nexthop}`).join(", ")],
        ["tags", (r.tags || []).join(", ")],
      ];
      const g = node("router", r, fields);
      box(g, x, routerY, ROUTER_W, ROUTER_H, 10);
      dot(g, x + 14, routerY + 18);
      label(g, x + 26, routerY + 22, `router ${r.name || short(r.id)}`, "name", ROUTER_W - 36);
      label(g, x + 12, routerY + 41, `host ${r.host || "unscheduled"} · ${legs.length} leg${legs.length === 1 ? "" : "s"}`, "sub", ROUTER_W - 20);
      label(
        g,
        x + 12,
        routerY + 58,
        r.external_ip ? `gateway ${r.external_ip}${r.enable_snat ? " · SNAT" : ""}` : "no external gateway",
        "sub",
        ROUTER_W - 20,
      );
      layers.routers.appendChild(g);
    }

    // Security groups, with member counts, under the columns
    let sgY = columnsBottom + 28;
    const sgHead = svg("text", { x: MARGIN, y: sgY, class: "section" }, `Security groups (${model.groups.length})`);
    layers.groups.appendChild(sgHead);
    sgY += 12;
    const perRow = Math.max(1, Math.floor((width - 2 * MARGIN + 16) / (SG_W + 16)));
    const groups = [...model.groups].sort((a, b) => (b.is_default - a.is_default) || String(a.name).localeCompare(String(b.name)));
    groups.forEach((sg, i) => {
      const x = MARGIN + (i % perRow) * (SG_W + 16);
      const y = sgY + Math.floor(i / perRow) * (SG_H + 12);
      const count = model.members.get(sg.id) || 0;
      const g = node("security_group", sg, [
        ["members", `${count} port${count === 1 ? "" : "s"}`],
        ["default", sg.is_default ? "yes" : undefined],
        ["description", sg.description],
        ["tags", (sg.tags || []).join(", ")],
      ]);
      g.setAttribute("data-members", count);
      box(g, x, y, SG_W, SG_H, 8);
      dot(g, x + 14, y + 17);
      label(g, x + 26, y + 21, sg.name || short(sg.id), "name", SG_W - 36);
      label(g, x + 12, y + 39, `${count} member port${count === 1 ? "" : "s"}${sg.is_default ? " · default" : ""}`, "sub", SG_W - 20);
      layers.groups.appendChild(g);
    });
    const sgRows = Math.ceil(groups.length / perRow);
    const height = sgY + sgRows * (SG_H + 12) + MARGIN;

    if (!model.subnets.length) {
      layers.subnets.appendChild(svg("text", { x: MARGIN, y: subnetY + 24, class: "empty" }, "This VPC has no subnets yet."));
    }

    root.appendChild(layers.legs);
    root.appendChild(layers.subnets);
    root.appendChild(layers.routers);
    root.appendChild(layers.groups);
    width = Math.ceil(width);
    root.setAttribute("width", width);
    root.setAttribute("height", Math.ceil(height));
    root.setAttribute("viewBox", `0 0 ${width} ${Math.ceil(height)}`);
    return root;
  }

  function drawSubnet(layer, model, col, x, top) {
    const s = col.subnet;
    const g = node("subnet", s, [
      ["CIDR", s.cidr],
      ["gateway", s.gateway_ip],
      ["VNI", s.vni],
      ["DNS", (s.dns_nameservers || []).join(", ")],
      ["tags", (s.tags || []).join(", ")],
    ]);
    box(g, x, top, COL_W, col.height, 10);
    g.appendChild(svg("rect", { class: "head", x, y: top, width: COL_W, height: SUBNET_HEAD_H, rx: 10 }));
    dot(g, x + 14, top + 18);
    label(g, x + 26, top + 22, `subnet ${s.name || short(s.id)}`, "name", COL_W - 36);
    label(g, x + 12, top + 43, s.cidr, "cidr");
    label(g, x + 12, top + 59, `gw ${s.gateway_ip} · VNI ${s.vni}`, "sub", COL_W - 20);
    layer.appendChild(g);

    let y = top + SUBNET_HEAD_H + GROUP_PAD;
    const inner = COL_W - 2 * GROUP_PAD;
    for (const group of col.groups) {
      const groupH = GROUP_HEAD_H + GROUP_PAD + group.ports.reduce(
        (h, p) => h + PORT_H + (model.fipByPort.has(p.id) ? FIP_H : 0) + ITEM_GAP, 0) + GROUP_PAD - ITEM_GAP + 2;
      const hg = svg("g", { class: "host-group", "data-kind": "host_group", "data-host": group.host, "data-subnet": s.id });
      hg.appendChild(svg("rect", { class: "host-box", x: x + GROUP_PAD, y, width: inner, height: groupH, rx: 6 }));
      label(hg, x + GROUP_PAD + 8, y + 16, group.host ? `host ${group.host}` : "not bound to a host", "host", inner - 16);
      label(hg, x + GROUP_PAD + inner - 8, y + 16, `${group.ports.length}`, "host-count");
      layer.appendChild(hg);
      let py = y + GROUP_HEAD_H + GROUP_PAD;
      for (const p of group.ports) {
        py += drawPort(layer, model, p, x + 2 * GROUP_PAD, py, inner - 2 * GROUP_PAD) + ITEM_GAP;
      }
      y += groupH + GROUP_PAD;
    }
    if (col.lbs.length) {
      label(layer, x + GROUP_PAD + 8, y + 16, "load balancers", "host");
      y += GROUP_HEAD_H + GROUP_PAD;
      for (const lb of col.lbs) {
        const lg = node("load_balancer", lb, [
          ["VIP", lb.vip_address],
          ["provisioning", lb.provisioning_status],
          ["operating", lb.operating_status],
        ]);
        box(lg, x + 2 * GROUP_PAD, y, inner - 2 * GROUP_PAD, PORT_H, 6);
        dot(lg, x + 2 * GROUP_PAD + 12, y + 15);
        label(lg, x + 2 * GROUP_PAD + 24, y + 19, `LB ${lb.name || short(lb.id)}`, "name", inner - 50);
        label(lg, x + 2 * GROUP_PAD + 10, y + 36, `VIP ${lb.vip_address || "?"}`, "sub", inner - 30);
        layer.appendChild(lg);
        y += PORT_H + ITEM_GAP;
      }
    }
    if (!col.groups.length && !col.lbs.length) {
      label(layer, x + 12, y + 18, "no ports", "empty");
    }
  }

  function drawPort(layer, model, p, x, y, w) {
    const fip = model.fipByPort.get(p.id);
    const g = node("port", p, [
      ["IP", p.ip_address],
      ["MAC", p.mac_address],
      ["host", p.host],
      ["netns", p.netns ? `${p.netns} (${p.interface_name})` : undefined],
      ["floating IP", fip ? fip.address : undefined],
      ["security groups", (p.security_group_ids || []).map((id) => model.groupNames.get(id) || short(id)).join(", ")],
      ["tags", (p.tags || []).join(", ")],
    ]);
    const h = PORT_H + (fip ? FIP_H : 0);
    box(g, x, y, w, h, 6);
    dot(g, x + 12, y + 15);
    label(g, x + 24, y + 19, p.name || `port ${short(p.id)}`, "name", w - 34);
    const where = p.netns ? ` · ${p.netns}/${p.interface_name}` : "";
    label(g, x + 10, y + 36, `${p.ip_address}${where}`, "sub", w - 20);
    layer.appendChild(g);
    if (fip) {
      const f = node("floating_ip", fip, [
        ["address", fip.address],
        ["port", p.id],
        ["fixed IP", fip.fixed_ip_address],
        ["router", fip.router_id],
      ]);
      f.setAttribute("data-port", p.id);
      const fx = x + 10;
      const fy = y + PORT_H - 4;
      box(f, fx, fy, w - 20, FIP_H - 2, 9);
      dot(f, fx + 11, fy + 10);
      label(f, fx + 22, fy + 14, `floating IP ${fip.address}`, "fip", w - 50);
      layer.appendChild(f);
    }
    return h;
  }

  // -- details panel -------------------------------------------------------------------------

  function findNode(key) {
    const [kind, ...rest] = key.split(":");
    const id = rest.join(":");
    for (const g of document.querySelectorAll("#topology [data-kind]")) {
      if (g.getAttribute("data-kind") === kind && g.getAttribute("data-id") === id) return g;
    }
    return null;
  }

  function select(key, pin) {
    if (pin) state.pinned = !(state.pinned && state.selected === key);
    state.selected = key;
    for (const g of document.querySelectorAll("#topology .selected")) g.classList.remove("selected");
    const g = findNode(key);
    if (g) g.classList.add("selected");
    showDetails(g);
    if (pin) writeFragment();
  }

  function showDetails(g) {
    const box = $("details");
    clear(box);
    if (!g || !g.__vpcd) {
      box.appendChild(el("p", { class: "muted" }, "Hover or click an element to see its details."));
      return;
    }
    const { kind, obj, fields } = g.__vpcd;
    const status = statusOf(obj);
    box.appendChild(el("h3", {}, `${kind.replace("_", " ")} ${obj.name || short(obj.id)}`));
    const badge = el("span", { class: `badge st-${status}` }, status);
    box.appendChild(badge);
    if (obj.status_detail) box.appendChild(el("p", { class: "detail" }, obj.status_detail));
    const dl = el("dl");
    const rows = [["id", obj.id], ...fields];
    if (obj.revision !== undefined) rows.push(["revision", obj.revision]);
    if (obj.updated_at) rows.push(["updated", obj.updated_at]);
    for (const [k, v] of rows) {
      if (v === undefined || v === null || v === "") continue;
      dl.appendChild(el("dt", {}, k));
      dl.appendChild(el("dd", {}, v));
    }
    box.appendChild(dl);
    if (state.pinned) box.appendChild(el("p", { class: "muted" }, "Pinned: click it again to unpin."));
  }

  function showProblems(model) {
    const list = $("problems");
    clear(list);
    const all = [
      ...model.subnets.map((o) => ["subnet", o]),
      ...model.routers.map((o) => ["router", o]),
      ...model.legs.map((o) => ["leg", o]),
      ...model.ports.map((o) => ["port", o]),
      ...model.fips.map((o) => ["floating_ip", o]),
      ...model.groups.map((o) => ["security_group", o]),
      ...model.loadBalancers.map((o) => ["load_balancer", o]),
    ];
    const bad = all.filter(([, o]) => statusOf(o) === "error");
    if (!bad.length) {
      list.appendChild(el("li", { class: "muted" }, "No element is in error."));
      return;
    }
    for (const [kind, o] of bad) {
      const li = el("li", { class: "problem", tabindex: 0, "data-kind": kind, "data-id": o.id });
      li.appendChild(el("strong", {}, `${kind.replace("_", " ")} ${o.name || o.ip_address || short(o.id)}`));
      li.appendChild(el("span", {}, `: ${o.status_detail || "error (no detail)"}`));
      li.addEventListener("click", () => select(`${kind}:${o.id}`, true));
      list.appendChild(li);
    }
  }

  function showSummary(model) {
    const counts = { active: 0, pending: 0, error: 0 };
    for (const o of [...model.subnets, ...model.routers, ...model.legs, ...model.ports, ...model.fips, ...model.groups, ...model.loadBalancers]) {
      counts[statusOf(o)] += 1;
    }
    const time = new Date().toLocaleTimeString();
    $("updated").textContent = `${counts.active} active · ${counts.pending} pending · ${counts.error} error — updated ${time}`;
  }

  // -- flow ----------------------------------------------------------------------------------

  function readFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      params.delete("token"); // keep the token out of the address bar and history
    }
    state.token = sessionStorage.getItem(TOKEN_KEY);
    state.vpcId = params.get("vpc") || null;
    const selected = params.get("select"); // "kind:id": a link to one element, pinned
    if (selected && selected !== state.selected) {
      state.selected = selected;
      state.pinned = true;
    }
    const size = Number.parseInt(params.get("page_size") || "", 10); // list page size
    state.pageSize = size >= 1 && size <= 1000 ? size : PAGE_SIZE;
    writeFragment();
  }

  function writeFragment() {
    const params = new URLSearchParams();
    if (state.vpcId) params.set("vpc", state.vpcId);
    if (state.pinned && state.selected) params.set("select", state.selected);
    if (state.pageSize !== PAGE_SIZE) params.set("page_size", String(state.pageSize));
    const hash = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (hash ? `#${hash}` : ""));
  }

  function askForToken(reason) {
    stopTimer();
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("vpc-bar").hidden = true;
    $("token-form").hidden = false;
    // nothing drawn with the old token stays on screen as if it were current
    clear($("canvas"));
    $("canvas").appendChild(
      el("p", { class: "empty" }, "Enter an API token: a tenant's token (POST /v1/tenants/{id}/tokens) or the admin token. It is kept in this tab only."),
    );
    clear($("problems"));
    state.selected = null;
    state.pinned = false;
    showDetails(null);
    $("updated").textContent = "";
    state.vpcSignature = "";
    document.body.dataset.state = "need-token";
    showMessage(reason || "", reason ? "error" : "info");
    $("token-input").focus();
  }

  async function refreshVpcs() {
    const vpcs = await listAll("vpcs");
    vpcs.sort((a, b) => String(a.name).localeCompare(String(b.name)) || a.id.localeCompare(b.id));
    state.vpcs = vpcs;
    const signature = JSON.stringify(vpcs.map((v) => [v.id, v.name, v.cidr]));
    if (!state.vpcId || !vpcs.some((v) => v.id === state.vpcId)) {
      if (state.vpcId && vpcs.length) showMessage("That VPC does not exist (or is not yours); showing another.");
      state.vpcId = vpcs.length ? vpcs[0].id : null;
      writeFragment();
    }
    if (signature === state.vpcSignature) {
      $("vpc-select").value = state.vpcId || "";
      return;
    }
    state.vpcSignature = signature;
    const select = $("vpc-select");
    clear(select);
    if (!vpcs.length) select.appendChild(el("option", { value: "" }, "no VPCs yet"));
    for (const v of vpcs) {
      select.appendChild(el("option", { value: v.id }, `${v.name || short(v.id)} — ${v.cidr}`));
    }
    select.value = state.vpcId || "";
  }

  async function refresh() {
    if (!state.token) return askForToken();
    if (state.busy) {
      state.again = true; // the running refresh is followed by one more
      return;
    }
    state.busy = true;
    state.again = false;
    stopTimer();
    try {
      await refreshVpcs();
      $("token-form").hidden = true;
      $("vpc-bar").hidden = false;
      const canvas = $("canvas");
      if (!state.vpcId) {
        clear(canvas);
        canvas.appendChild(el("p", { class: "empty" }, "There is no VPC to show. Create one with POST /v1/vpcs."));
        document.body.dataset.state = "ready";
        return;
      }
      const model = await loadVpc(state.vpcId);
      state.model = model;
      const drawing = draw(model);
      clear(canvas);
      canvas.appendChild(drawing);
      showProblems(model);
      showSummary(model);
      if (state.selected) {
        const g = findNode(state.selected);
        if (g) {
          g.classList.add("selected");
          showDetails(g);
        } else {
          state.selected = null;
          state.pinned = false;
          showDetails(null);
          writeFragment();
        }
      }
      if ($("message").className !== "info") showMessage("");
      document.body.dataset.state = "ready";
      document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    } catch (err) {
      if (err instanceof AuthError) {
        askForToken("The API refused the token (401). Enter a valid token.");
        return;
      }
      document.body.dataset.state = "error";
      showMessage(`Could not load the topology: ${err.message}. Retrying.`);
    } finally {
      state.busy = false;
      if (state.token && state.again) setTimeout(refresh, 0);
      else if (state.token && $("auto-refresh").checked) startTimer();
    }
  }

  function startTimer() {
    stopTimer();
    // a hidden tab does not poll; it refreshes when shown again (visibilitychange)
    state.timer = setTimeout(() => (document.hidden ? stopTimer() : refresh()), REFRESH_MS);
  }

  function stopTimer() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  function init() {
    readFragment();
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      $("token-input").value = "";
      sessionStorage.setItem(TOKEN_KEY, value);
      state.token = value;
      state.vpcSignature = "";
      showMessage("");
      refresh();
    });
    $("vpc-select").addEventListener("change", (ev) => {
      state.vpcId = ev.target.value || null;
      state.selected = null;
      state.pinned = false;
      showDetails(null);
      writeFragment();
      refresh();
    });
    $("refresh-button").addEventListener("click", () => refresh());
    $("auto-refresh").addEventListener("change", (ev) => (ev.target.checked ? refresh() : stopTimer()));
    $("forget-token").addEventListener("click", () => askForToken(""));
    $("canvas").addEventListener("click", () => {
      state.pinned = false;
      writeFragment();
    });
    window.addEventListener("hashchange", () => {
      readFragment();
      refresh();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.token) refresh();
    });
    if (state.token) refresh();
    else askForToken("");
  }

  init();
})();
