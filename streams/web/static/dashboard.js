/*
 * Retention dashboard: fetches /retention/summary (summary/1) and draws it as SVG.
 * Plain browser JavaScript, no libraries, no build step, no network access beyond the
 * worker that serves this page. Every chart container carries data-chart and
 * data-state ("loading" | "ready" | "empty" | "error"); every bar, point and table row
 * carries data-value so tests (and curious people) can read the numbers back.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  // The whole cluster by default; ?scope=local shows only the worker serving the page.
  var SCOPE = new URLSearchParams(window.location.search).get("scope") === "local" ? "local" : "cluster";
  var SUMMARY_URL = "/retention/summary?scope=" + SCOPE;
  var FETCH_TIMEOUT_MS = 15000;

  // Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
  var OUTCOMES = [
    { key: "delivered", label: "Delivered", color: "#0072B2" },
    { key: "holdout", label: "Holdout (control group)", color: "#E69F00" },
    { key: "opted_out", label: "Opted out", color: "#CC79A7" },
    { key: "outranked", label: "Outranked", color: "#56B4E9" },
    { key: "min_gap", label: "Min gap", color: "#009E73" },
    { key: "frequency_cap", label: "Frequency cap", color: "#D55E00" },
    { key: "superseded", label: "Superseded (rules changed)", color: "#999999" }
  ];
  // Only a rule with a send window decides these: columns of their own only then.
  var WINDOW_OUTCOMES = [
    { key: "outside_window", label: "Outside send window", color: "#7F7F7F" },
    { key: "cancelled", label: "Cancelled before its window", color: "#B07AA1" }
  ];
  var RULES = {
    second_purchase: { label: "Second purchase", color: "#0072B2", order: 0 },
    inactivity: { label: "Inactivity", color: "#D55E00", order: 1 },
    overdue: { label: "Overdue", color: "#009E73", order: 2 }
  };
  var EXTRA_RULE_COLORS = ["#CC79A7", "#56B4E9", "#E69F00", "#000000"];
  var STEP_DASH = ["", "7 4", "2 3", "10 3 2 3"];
  var STAGES = [
    { key: "prospect", label: "Prospect" },
    { key: "new", label: "New" },
    { key: "repeat", label: "Repeat" },
    { key: "at_risk", label: "At risk" },
    { key: "lapsed", label: "Lapsed" },
    { key: "reactivated", label: "Reactivated" }
  ];
  var SUPPRESSION = [
    { key: "holdout", label: "Holdout" },
    { key: "opted_out", label: "Opted out" },
    { key: "outranked", label: "Outranked" },
    { key: "min_gap", label: "Min gap" },
    { key: "frequency_cap", label: "Frequency cap" }
  ];

  // ---- small helpers -------------------------------------------------------------

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function html(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" || typeof c === "number"
        ? document.createTextNode(String(c)) : c);
    });
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    });
  }

  function num(v) {
    var n = Number(v);
    return isFinite(n) ? n : 0;
  }

  function fmtInt(v) {
    return num(v).toLocaleString("en-US", { maximumFractionDigits: 0 });
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(Number(v))) return "\u2013";
    return Number(v).toLocaleString("en-US", {
      minimumFractionDigits: digits, maximumFractionDigits: digits
    });
  }

  function fmtPct(rate, digits) {
    if (rate === null || rate === undefined || !isFinite(Number(rate))) return "\u2013";
    return (Number(rate) * 100).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  function fmtTime(iso) {
    if (!iso) return "\u2013";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toISOString().replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC");
  }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function clockText(d) {
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function ruleInfo(rule) {
    if (RULES[rule]) return RULES[rule];
    var keys = Object.keys(RULES);
    var info = {
      label: String(rule).replace(/_/g, " ").replace(/^./, function (c) { return c.toUpperCase(); }),
      color: EXTRA_RULE_COLORS[(keys.length - 3) % EXTRA_RULE_COLORS.length],
      order: keys.length
    };
    RULES[rule] = info;
    return info;
  }

  function ruleStepLabel(rule, step) {
    return ruleInfo(rule).label + " \u00b7 step " + step;
  }

  /** The outcome columns of a summary: today's, and the send windows' when a rule has one. */
  function outcomesOf(s) {
    return s.send_windows ? OUTCOMES.concat(WINDOW_OUTCOMES) : OUTCOMES.slice();
  }

  /** An outcome met in the data that has no column yet. */
  function extraOutcome(key) {
    return WINDOW_OUTCOMES.filter(function (o) { return o.key === key; })[0]
      || { key: key, label: key, color: "#555555" };
  }

  function byRuleStep(a, b) {
    var ra = ruleInfo(a.rule).order, rb = ruleInfo(b.rule).order;
    if (ra !== rb) return ra - rb;
    if (a.rule !== b.rule) return a.rule < b.rule ? -1 : 1;
    return num(a.step) - num(b.step);
  }

  /** Round axis maximum and 4-6 ticks for values in [0, max]. */
  function niceTicks(max) {
    if (!(max > 0)) return { max: 1, ticks: [0, 1] };
    var raw = max / 5;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * mag; })
      .filter(function (s) { return s >= raw; })[0];
    if (step < 1) step = 1;
    var top = Math.ceil(max / step) * step;
    var ticks = [];
    for (var t = 0; t <= top + step / 2; t += step) ticks.push(t);
    return { max: top, ticks: ticks };
  }

  function shortCount(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + "k";
    return fmtInt(v);
  }

  // ---- chart building blocks -----------------------------------------------------

  function chartBox(name) {
    var fig = document.querySelector('[data-chart="' + name + '"]');
    return fig ? { fig: fig, body: fig.querySelector(".chart") } : null;
  }

  function setEmpty(box, message) {
    box.body.replaceChildren(html("p", { "class": "empty", "data-empty": "true" }, [message]));
    box.fig.setAttribute("data-state", "empty");
    box.fig.setAttribute("data-total", "0");
  }

  function setReady(box, nodes, total) {
    box.body.replaceChildren.apply(box.body, nodes.filter(Boolean));
    box.fig.setAttribute("data-state", "ready");
    box.fig.setAttribute("data-total", String(total));
  }

  /** A <details> with the numbers as a table: the text alternative of a chart. */
  function numbersTable(name, headers, rows) {
    var open = document.querySelector('[data-chart="' + name + '"] details.as-table[open]');
    var thead = html("thead", null, [html("tr", null, headers.map(function (h) {
      return html("th", { scope: "col" }, [h]);
    }))]);
    var tbody = html("tbody", null, rows.map(function (r) {
      return html("tr", null, r.map(function (cell, i) {
        return html(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : null, [String(cell)]);
      }));
    }));
    var details = html("details", { "class": "as-table" }, [
      html("summary", null, ["Show the numbers as a table"]),
      html("div", { "class": "table-wrap" }, [html("table", { "class": "data" }, [thead, tbody])])
    ]);
    if (open) details.open = true;
    return details;
  }

  function legend(items) {
    return html("ul", { "class": "legend", "aria-hidden": "true" }, items.map(function (it) {
      var sw = html("span", { "class": "swatch", style: "background:" + it.color });
      if (it.dash) {
        sw = svg("svg", { width: 26, height: 10, viewBox: "0 0 26 10" });
        sw.appendChild(svg("line", {
          x1: 1, y1: 5, x2: 25, y2: 5, stroke: it.color, "stroke-width": 2.5,
          "stroke-dasharray": it.dash === "solid" ? null : it.dash
        }));
      }
      return html("li", null, [sw, it.label]);
    }));
  }

  /** Horizontal bars: items [{key, label, value, color}]. */
  function hbars(name, items, opts) {
    var labelW = opts.labelWidth || 130, width = 560, barH = 22, gap = 8;
    var top = 6, plotW = width - labelW - 70;
    var height = top + items.length * (barH + gap) + 34;
    var max = Math.max.apply(null, items.map(function (i) { return i.value; }).concat([0]));
    var scale = niceTicks(max);
    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": opts.title + ": " + items.map(function (i) {
        return i.label + " " + fmtInt(i.value);
      }).join(", ")
    });
    scale.ticks.forEach(function (t) {
      var x = labelW + (t / scale.max) * plotW;
      root.appendChild(svg("line", {
        "class": "grid-line", x1: x, x2: x, y1: top - 2, y2: height - 30
      }));
      root.appendChild(svg("text", {
        x: x, y: height - 18, "text-anchor": "middle", "class": "tick"
      }, shortCount(t)));
    });
    items.forEach(function (it, i) {
      var y = top + i * (barH + gap);
      var w = (it.value / scale.max) * plotW;
      var g = svg("g", {
        "data-key": it.key, "data-label": it.label, "data-value": it.value
      });
      g.appendChild(svg("text", {
        x: labelW - 8, y: y + barH / 2 + 4, "text-anchor": "end"
      }, it.label));
      var rect = svg("rect", {
        "class": "bar", x: labelW, y: y, width: Math.max(w, it.value > 0 ? 1.5 : 0),
        height: barH, rx: 2, fill: it.color || "#0072B2", "data-key": it.key, "data-value": it.value
      });
      rect.appendChild(svg("title", null, it.label + ": " + fmtInt(it.value)));
      g.appendChild(rect);
      g.appendChild(svg("text", {
        "class": "bar-value", x: labelW + w + 6, y: y + barH / 2 + 4
      }, fmtInt(it.value)));
      root.appendChild(g);
    });
    root.appendChild(svg("line", {
      "class": "axis", x1: labelW, x2: labelW, y1: top - 2, y2: height - 30
    }));
    root.appendChild(svg("text", {
      "class": "axis-title", x: labelW + plotW / 2, y: height - 3, "text-anchor": "middle"
    }, opts.xTitle));
    return root;
  }

  // ---- the charts ---------------------------------------------------------------------

  function drawTtsp(s) {
    var box = chartBox("ttsp");
    var ttsp = (s.report && s.report.ttsp) || {};
    var bins = (ttsp.histogram || []).map(function (b) {
      return { label: String(b.label), value: num(b.count), lower: b.lower_days, upper: b.upper_days };
    });
    var total = bins.reduce(function (a, b) { return a + b.value; }, 0);
    if (!bins.length || total === 0) {
      setEmpty(box, "No data yet: no customer has made a second purchase.");
      return;
    }
    var width = 960, height = 280, left = 60, right = 16, top = 18, bottom = 50;
    var plotW = width - left - right, plotH = height - top - bottom;
    var scale = niceTicks(Math.max.apply(null, bins.map(function (b) { return b.value; })));
    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Time to second purchase histogram: " + bins.map(function (b) {
        return b.label + " " + fmtInt(b.value) + " customers";
      }).join(", ")
    });
    scale.ticks.forEach(function (t) {
      var y = top + plotH - (t / scale.max) * plotH;
      root.appendChild(svg("line", { "class": "grid-line", x1: left, x2: width - right, y1: y, y2: y }));
      root.appendChild(svg("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, shortCount(t)));
    });
    var slot = plotW / bins.length, barW = Math.max(4, slot * 0.78);
    bins.forEach(function (b, i) {
      var h = (b.value / scale.max) * plotH;
      var x = left + i * slot + (slot - barW) / 2, y = top + plotH - h;
      var g = svg("g", { "data-label": b.label, "data-value": b.value });
      var rect = svg("rect", {
        "class": "bar", x: x, y: y, width: barW, height: Math.max(h, b.value > 0 ? 1.5 : 0),
        fill: "#0072B2", "data-value": b.value, "data-label": b.label, rx: 2
      });
      rect.appendChild(svg("title", null, b.label + ": " + fmtInt(b.value) + " customers"));
      g.appendChild(rect);
      g.appendChild(svg("text", {
        "class": "bar-value", x: x + barW / 2, y: y - 4, "text-anchor": "middle"
      }, fmtInt(b.value)));
      g.appendChild(svg("text", {
        x: x + barW / 2, y: top + plotH + 16, "text-anchor": "middle"
      }, b.label));
      root.appendChild(g);
    });
    root.appendChild(svg("line", { "class": "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }));
    root.appendChild(svg("text", {
      "class": "axis-title", x: left + plotW / 2, y: height - 6, "text-anchor": "middle"
    }, "Days between first and second order"));
    root.appendChild(svg("text", {
      "class": "axis-title", transform: "rotate(-90)", x: -(top + plotH / 2), y: 14,
      "text-anchor": "middle"
    }, "Customers"));
    var o = ttsp.overall || {};
    var note = html("p", { "class": "note" }, [
      fmtInt(total) + " customers bought twice. Median " + fmtNum(o.median_days, 1) +
      " days, 75% within " + fmtNum(o.p75_days, 1) + " days, 90% within " +
      fmtNum(o.p90_days, 1) + " days."
    ]);
    setReady(box, [root, note, numbersTable("ttsp", ["Days", "Customers"], bins.map(function (b) {
      return [b.label, fmtInt(b.value)];
    }))], total);
  }

  function dayIndex(date) {
    var t = Date.parse(String(date) + "T00:00:00Z");
    return isNaN(t) ? null : Math.round(t / 86400000);
  }

  function dateOf(day) {
    return new Date(day * 86400000).toISOString().slice(0, 10);
  }

  function drawTriggers(s) {
    var box = chartBox("triggers");
    var heading = box.fig.querySelector("h2");
    var rows = (s.triggers_over_time || []).filter(function (r) {
      return num(r.count) > 0 && dayIndex(r.date) !== null;
    });
    if (!rows.length) {
      heading.textContent = "Nudges delivered over time, by rule and step";
      setEmpty(box, "No data yet: no nudge has been delivered since the workers started.");
      return;
    }
    var days = rows.map(function (r) { return dayIndex(r.date); });
    var firstDay = Math.min.apply(null, days), lastDay = Math.max.apply(null, days);
    // More than about two months of days is unreadable as daily points: count per week.
    var weekly = lastDay - firstDay > 62;
    var stride = weekly ? 7 : 1;
    // Day 4 after the epoch was a Monday: weeks start on Mondays.
    var bucket = function (d) { return weekly ? Math.floor((d - 4) / 7) * 7 + 4 : d; };
    var unit = weekly ? "week" : "day";
    var whenText = function (d) { return (weekly ? "week of " : "") + dateOf(d); };
    heading.textContent = "Nudges delivered per " + unit + ", by rule and step";
    var series = {};
    rows.forEach(function (r) {
      var key = r.rule + "/" + r.step;
      var sr = series[key] || (series[key] = { rule: r.rule, step: num(r.step), points: {}, total: 0 });
      var b = bucket(dayIndex(r.date));
      sr.points[b] = (sr.points[b] || 0) + num(r.count);
      sr.total += num(r.count);
    });
    var list = Object.keys(series).map(function (k) { return series[k]; }).sort(byRuleStep);
    var minB = bucket(firstDay), maxB = bucket(lastDay);
    var lo = minB, hi = maxB;
    if (lo === hi) { lo -= stride; hi += stride; }
    var max = 0;
    list.forEach(function (sr) {
      Object.keys(sr.points).forEach(function (d) { max = Math.max(max, sr.points[d]); });
    });
    var width = 960, height = 300, left = 60, right = 36, top = 14, bottom = 50;
    var plotW = width - left - right, plotH = height - top - bottom;
    var scale = niceTicks(max);
    var xOf = function (d) { return left + ((d - lo) / (hi - lo)) * plotW; };
    var yOf = function (v) { return top + plotH - (v / scale.max) * plotH; };
    var total = list.reduce(function (a, sr) { return a + sr.total; }, 0);
    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Nudges delivered per " + unit + " from " + dateOf(firstDay) + " to " +
        dateOf(lastDay) + ": " + list.map(function (sr) {
          return ruleStepLabel(sr.rule, sr.step) + " " + fmtInt(sr.total) + " in total";
        }).join(", ")
    });
    scale.ticks.forEach(function (t) {
      var y = yOf(t);
      root.appendChild(svg("line", { "class": "grid-line", x1: left, x2: width - right, y1: y, y2: y }));
      root.appendChild(svg("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, shortCount(t)));
    });
    // About six date labels along the x axis, on bucket starts.
    var labelEvery = Math.max(1, Math.ceil((hi - lo) / stride / 6)) * stride;
    for (var d = lo; d <= hi; d += labelEvery) {
      root.appendChild(svg("line", { "class": "axis", x1: xOf(d), x2: xOf(d), y1: top + plotH, y2: top + plotH + 4 }));
      root.appendChild(svg("text", { x: xOf(d), y: top + plotH + 18, "text-anchor": "middle" }, dateOf(d)));
    }
    list.forEach(function (sr) {
      var info = ruleInfo(sr.rule);
      var dash = STEP_DASH[(sr.step - 1 + STEP_DASH.length) % STEP_DASH.length];
      var g = svg("g", {
        "class": "series", "data-rule": sr.rule, "data-step": sr.step, "data-value": sr.total
      });
      // Periods without a nudge count as zero, so the line drops to the axis between them.
      var path = [];
      for (var b = minB; b <= maxB; b += stride) {
        path.push((path.length ? "L" : "M") + xOf(b).toFixed(1) + " " + yOf(sr.points[b] || 0).toFixed(1));
      }
      g.appendChild(svg("path", {
        d: path.join(" "), fill: "none", stroke: info.color, "stroke-width": 2,
        "stroke-dasharray": dash || null, "stroke-linejoin": "round"
      }));
      Object.keys(sr.points).forEach(function (k) {
        var at = Number(k), v = sr.points[k];
        var c = svg("circle", {
          "class": "point", cx: xOf(at).toFixed(1), cy: yOf(v).toFixed(1), r: weekly ? 3 : 2.2,
          fill: info.color, "data-date": dateOf(at), "data-value": v
        });
        c.appendChild(svg("title", null, ruleStepLabel(sr.rule, sr.step) + ", " + whenText(at) + ": " + fmtInt(v)));
        g.appendChild(c);
      });
      root.appendChild(g);
    });
    root.appendChild(svg("line", { "class": "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }));
    root.appendChild(svg("text", {
      "class": "axis-title", x: left + plotW / 2, y: height - 6, "text-anchor": "middle"
    }, weekly ? "Week the nudges fell due (UTC, weeks start on Monday)" : "Day the nudges fell due (UTC)"));
    root.appendChild(svg("text", {
      "class": "axis-title", transform: "rotate(-90)", x: -(top + plotH / 2), y: 14,
      "text-anchor": "middle"
    }, "Nudges per " + unit));
    var leg = legend(list.map(function (sr) {
      return {
        label: ruleStepLabel(sr.rule, sr.step) + " (" + fmtInt(sr.total) + ")",
        color: ruleInfo(sr.rule).color,
        dash: STEP_DASH[(sr.step - 1 + STEP_DASH.length) % STEP_DASH.length] || "solid"
      };
    }));
    setReady(box, [root, leg, numbersTable("triggers", ["Rule and step", "Nudges", "First " + unit, "Last " + unit],
      list.map(function (sr) {
        var at = Object.keys(sr.points).map(Number);
        return [ruleStepLabel(sr.rule, sr.step), fmtInt(sr.total),
          dateOf(Math.min.apply(null, at)), dateOf(Math.max.apply(null, at))];
      }))], total);
  }

  function drawDecisions(s) {
    var box = chartBox("decisions");
    var rows = (s.decisions || []).filter(function (r) { return num(r.count) > 0; });
    if (!rows.length) {
      setEmpty(box, "No data yet: no reminder has fallen due.");
      return;
    }
    var groups = {};
    rows.forEach(function (r) {
      var key = r.rule + "/" + r.step;
      var g = groups[key] || (groups[key] = { rule: r.rule, step: num(r.step), by: {}, total: 0 });
      g.by[r.outcome] = (g.by[r.outcome] || 0) + num(r.count);
      g.total += num(r.count);
    });
    var list = Object.keys(groups).map(function (k) { return groups[k]; }).sort(byRuleStep);
    var outcomes = outcomesOf(s);
    rows.forEach(function (r) {
      if (!outcomes.some(function (o) { return o.key === r.outcome; })) {
        outcomes.push(extraOutcome(r.outcome));
      }
    });
    var labelW = 180, width = 560, barH = 22, gap = 8, top = 6, plotW = width - labelW - 70;
    var height = top + list.length * (barH + gap) + 34;
    var scale = niceTicks(Math.max.apply(null, list.map(function (g) { return g.total; })));
    var total = list.reduce(function (a, g) { return a + g.total; }, 0);
    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Decisions by rule and step: " + list.map(function (g) {
        return ruleStepLabel(g.rule, g.step) + " " + outcomes.filter(function (o) { return g.by[o.key]; })
          .map(function (o) { return fmtInt(g.by[o.key]) + " " + o.label.toLowerCase(); }).join(", ");
      }).join("; ")
    });
    scale.ticks.forEach(function (t) {
      var x = labelW + (t / scale.max) * plotW;
      root.appendChild(svg("line", { "class": "grid-line", x1: x, x2: x, y1: top - 2, y2: height - 30 }));
      root.appendChild(svg("text", { x: x, y: height - 18, "text-anchor": "middle" }, shortCount(t)));
    });
    list.forEach(function (g, i) {
      var y = top + i * (barH + gap), x = labelW;
      var row = svg("g", { "data-rule": g.rule, "data-step": g.step, "data-value": g.total });
      row.appendChild(svg("text", { x: labelW - 8, y: y + barH / 2 + 4, "text-anchor": "end" },
        ruleStepLabel(g.rule, g.step)));
      outcomes.forEach(function (o) {
        var v = g.by[o.key] || 0;
        if (!v) return;
        var w = (v / scale.max) * plotW;
        var rect = svg("rect", {
          "class": "bar", x: x, y: y, width: Math.max(w, 1.5), height: barH, fill: o.color,
          "data-outcome": o.key, "data-value": v
        });
        rect.appendChild(svg("title", null, ruleStepLabel(g.rule, g.step) + ", " + o.label + ": " + fmtInt(v)));
        row.appendChild(rect);
        x += w;
      });
      row.appendChild(svg("text", { "class": "bar-value", x: x + 6, y: y + barH / 2 + 4 }, fmtInt(g.total)));
      root.appendChild(row);
    });
    root.appendChild(svg("line", { "class": "axis", x1: labelW, x2: labelW, y1: top - 2, y2: height - 30 }));
    root.appendChild(svg("text", {
      "class": "axis-title", x: labelW + plotW / 2, y: height - 3, "text-anchor": "middle"
    }, "Decisions"));
    var used = outcomes.filter(function (o) { return list.some(function (g) { return g.by[o.key]; }); });
    setReady(box, [root, legend(used), numbersTable("decisions",
      ["Rule and step"].concat(used.map(function (o) { return o.label; }), ["Total"]),
      list.map(function (g) {
        return [ruleStepLabel(g.rule, g.step)].concat(used.map(function (o) {
          return fmtInt(g.by[o.key] || 0);
        }), [fmtInt(g.total)]);
      }))], total);
  }

  function drawCategoryBars(name, items, opts) {
    var box = chartBox(name);
    var total = items.reduce(function (a, i) { return a + i.value; }, 0);
    if (!items.length || (total === 0 && !opts.showZeros)) {
      setEmpty(box, opts.empty);
      return;
    }
    var nodes = [hbars(name, items, opts)];
    if (total === 0 && opts.zeroNote) nodes.push(html("p", { "class": "note" }, [opts.zeroNote]));
    nodes.push(numbersTable(name, [opts.keyTitle, opts.valueTitle], items.map(function (i) {
      return [i.label, fmtInt(i.value)];
    })));
    setReady(box, nodes, total);
  }

  function drawSuppression(s) {
    var sup = s.suppression || {};
    var colors = {};
    OUTCOMES.forEach(function (o) { colors[o.key] = o.color; });
    var items = SUPPRESSION.map(function (r) {
      return { key: r.key, label: r.label, value: num(sup[r.key]), color: colors[r.key] };
    });
    Object.keys(sup).forEach(function (k) {
      if (!SUPPRESSION.some(function (r) { return r.key === k; })) {
        items.push({ key: k, label: k, value: num(sup[k]), color: "#555555" });
      }
    });
    drawCategoryBars("suppression", items, {
      title: "Nudges held back by reason", xTitle: "Nudges held back", showZeros: true,
      zeroNote: "No nudge has been held back so far: every reminder that fell due was delivered.",
      keyTitle: "Reason", valueTitle: "Nudges", empty: "No data yet."
    });
  }

  /** Send windows (docs/send-windows.md "Outputs"): delivered nudges by local send
   * hour 0-23, stacked by rule, and per rule the deferrals, drops and cancellations.
   * The panel is hidden while no rule has a window (the summary has no send_windows). */
  function drawSendWindows(s) {
    var box = chartBox("send-windows");
    var rules = s.send_windows;
    if (!rules) {
      box.fig.hidden = true;
      setEmpty(box, "No rule has a send window.");
      return;
    }
    box.fig.hidden = false;
    rules = rules.slice().sort(byRuleStep);
    var perHour = [];
    for (var h = 0; h < 24; h++) {
      perHour.push(rules.reduce(function (a, r) { return a + num(r.delivered_by_local_hour[h]); }, 0));
    }
    var total = perHour.reduce(function (a, v) { return a + v; }, 0);
    var width = 960, height = 260, left = 60, bottom = 50, top = 18;
    var plotW = width - left - 16, plotH = height - top - bottom, slot = plotW / 24;
    var scale = niceTicks(Math.max.apply(null, perHour.concat([0])));
    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Nudges delivered by local send hour: " + perHour.map(function (v, i) {
        return i + ":00 " + fmtInt(v);
      }).join(", ")
    });
    scale.ticks.forEach(function (t) {
      var y = top + plotH - (t / scale.max) * plotH;
      root.appendChild(svg("line", { "class": "grid-line", x1: left, x2: width - 16, y1: y, y2: y }));
      root.appendChild(svg("text", { "class": "tick", x: left - 6, y: y + 4, "text-anchor": "end" }, shortCount(t)));
    });
    perHour.forEach(function (v, hour) {
      var x = left + hour * slot + 2, y = top + plotH;
      rules.forEach(function (r) {
        var n = num(r.delivered_by_local_hour[hour]);
        if (!n) return;
        var hgt = (n / scale.max) * plotH;
        y -= hgt;
        var rect = svg("rect", {
          "class": "bar", x: x, y: y, width: slot - 4, height: Math.max(hgt, 1), fill: ruleInfo(r.rule).color,
          "data-key": hour + ":" + r.rule, "data-rule": r.rule, "data-hour": hour, "data-value": n
        });
        rect.appendChild(svg("title", null, ruleInfo(r.rule).label + ", " + hour + ":00-" + hour + ":59 local: " + fmtInt(n)));
        root.appendChild(rect);
      });
      root.appendChild(svg("text", { "class": "tick", x: x + (slot - 4) / 2, y: top + plotH + 16, "text-anchor": "middle" },
        String(hour)));
    });
    root.appendChild(svg("line", { "class": "axis", x1: left, x2: width - 16, y1: top + plotH, y2: top + plotH }));
    root.appendChild(svg("text", { "class": "axis-title", x: left + plotW / 2, y: height - 8, "text-anchor": "middle" },
      "Local send hour (customer's time)"));
    var body = rules.map(function (r) {
      return {
        attrs: { "data-rule": r.rule, "data-value": num(r.deferred) },
        cells: [cell(ruleInfo(r.rule).label + " (" + r.rule + ")"), cell(fmtInt(r.deferred), num(r.deferred), "deferred"),
          cell(fmtInt(r.outside_window), num(r.outside_window), "outside_window"),
          cell(fmtInt(r.cancelled), num(r.cancelled), "cancelled")]
      };
    });
    setReady(box, [root, legend(rules.map(function (r) {
      return { label: ruleInfo(r.rule).label, color: ruleInfo(r.rule).color };
    })), table("send-windows", ["Rule", "Waited for the window", "Outside window (dropped)", "Cancelled"], body),
    numbersTable("send-windows", ["Local hour"].concat(rules.map(function (r) { return ruleInfo(r.rule).label; })),
      perHour.map(function (_, hour) {
        return [hour + ":00"].concat(rules.map(function (r) { return fmtInt(r.delivered_by_local_hour[hour]); }));
      }))], total);
  }

  /** P(alive) (docs/reports.md "P(alive)"): the buyers in each tenth of P(alive) at
   * the report time, one chart per model version (the kind shown: MBG/NBD when the
   * model has it), every kind in the numbers table.  Hidden while the rules have no
   * [model] (the report has no p_alive). */
  function drawPAlive(s) {
    var box = chartBox("p-alive");
    var blocks = s.report && s.report.p_alive;
    if (!blocks) {
      box.fig.hidden = true;
      setEmpty(box, "The rules have no [model].");
      return;
    }
    box.fig.hidden = false;
    var versions = [];
    blocks.forEach(function (b) { if (versions.indexOf(b.model_version) < 0) versions.push(b.model_version); });
    versions.sort();
    var label = function (i) { return (i / 10).toFixed(1) + "\u2013" + ((i + 1) / 10).toFixed(1); };
    var nodes = [], total = 0;
    versions.forEach(function (v) {
      var mine = blocks.filter(function (b) { return b.model_version === v; });
      var shown = mine.filter(function (b) { return b.kind === "mbgnbd"; })[0] || mine[0];
      total += num(shown.customers);
      nodes.push(hbars("p-alive", shown.deciles.map(function (n, i) {
        return { key: v + ":" + shown.kind + ":" + i, label: label(i), value: num(n), color: "#0072B2" };
      }), {
        title: "Buyers by P(alive), model " + v + " (" + shown.kind + ")",
        xTitle: "Buyers (model " + v + ", " + shown.kind + ")", labelWidth: 90
      }));
    });
    if (!total) {
      setEmpty(box, "No buyer scored yet.");
      return;
    }
    var head = ["Model", "Kind", "Buyers"];
    for (var i = 0; i < 10; i++) head.push(label(i));
    nodes.push(numbersTable("p-alive", head, blocks.map(function (b) {
      return [b.model_version, b.kind, fmtInt(b.customers)].concat(b.deciles.map(fmtInt));
    })));
    setReady(box, nodes, total);
  }

  // ---- the lifecycle (docs/reports.md "Funnel", "Recovered revenue", "Cancellations"):
  // each panel hidden while the report has no such block (no views, no conversion of an
  // abandonment rule, no cancellation).

  function hiddenPanel(box, message) {
    box.fig.hidden = true;
    setEmpty(box, message);
  }

  var FUNNEL = [
    { key: "customers", label: "Viewed a product" },
    { key: "carts", label: "Had a cart" },
    { key: "checkouts", label: "Started a checkout" },
    { key: "orders", label: "Ordered" }
  ];

  function drawFunnel(s) {
    var box = chartBox("funnel");
    var cohorts = s.report && s.report.funnel;
    if (!cohorts) {
      hiddenPanel(box, "No product views yet.");
      return;
    }
    box.fig.hidden = false;
    var totals = FUNNEL.map(function (st) {
      return cohorts.reduce(function (a, c) { return a + num(c[st.key]); }, 0);
    });
    var items = FUNNEL.map(function (st, i) {
      return { key: st.key, label: st.label, value: totals[i], color: "#009E73" };
    });
    var rows = cohorts.map(function (c) {
      return [c.cohort].concat(FUNNEL.map(function (st, i) {
        var n = fmtInt(c[st.key]);
        return i === 0 ? n : n + " (" + fmtPct(c.rates[st.key]) + ")";
      }));
    });
    setReady(box, [
      hbars("funnel", items, {
        title: "Customers by furthest funnel stage, all first-view months", xTitle: "Customers",
        labelWidth: 150
      }),
      numbersTable("funnel", ["First-view month"].concat(FUNNEL.map(function (st) {
        return st.label;
      })), rows)
    ], totals[0]);
  }

  function money(sums) {
    var keys = Object.keys(sums || {}).sort();
    return keys.length ? keys.map(function (c) { return c + " " + sums[c]; }).join(", ") : "\u2013";
  }

  function drawRecovered(s) {
    var box = chartBox("recovered");
    var blocks = s.report && s.report.recovered_revenue;
    if (!blocks) {
      hiddenPanel(box, "No abandonment rule has converted yet.");
      return;
    }
    box.fig.hidden = false;
    var items = [], rows = [], total = 0;
    blocks.forEach(function (b) {
      ["delivered", "holdout"].forEach(function (g) {
        var x = b[g];
        Object.keys(x.per_customer).sort().forEach(function (cur) {
          items.push({
            key: b.rule + ":" + g + ":" + cur,
            label: ruleInfo(b.rule).label + ", " + g + " (" + cur + ")",
            value: num(x.per_customer[cur]),
            color: g === "delivered" ? "#0072B2" : "#999999"
          });
        });
        total += num(x.customers);
        rows.push([ruleInfo(b.rule).label, g, fmtInt(x.customers), money(x.revenue),
          money(x.per_customer)]);
      });
    });
    setReady(box, [
      hbars("recovered", items, {
        title: "Revenue per customer of abandonment rules, delivered against holdout",
        xTitle: "Revenue per customer of the group", labelWidth: 250
      }),
      numbersTable("recovered", ["Rule", "Group", "Customers", "Revenue", "Per customer"], rows)
    ], total);
  }

  function drawCancellations(s) {
    var box = chartBox("cancellations");
    var c = s.report && s.report.cancellations;
    if (!c) {
      hiddenPanel(box, "No order was cancelled.");
      return;
    }
    box.fig.hidden = false;
    var items = [
      { key: "placed", label: "Orders placed", value: num(c.placed), color: "#0072B2" },
      { key: "full", label: "Cancelled in full", value: num(c.full), color: "#D55E00" },
      { key: "partial", label: "Partly refunded", value: num(c.partial), color: "#E69F00" }
    ];
    setReady(box, [
      hbars("cancellations", items, { title: "Cancelled orders", xTitle: "Orders", labelWidth: 150 }),
      numbersTable("cancellations", ["Figure", "Value"], [
        ["Orders placed", fmtInt(c.placed)],
        ["Cancelled in full", fmtInt(c.full) + " (" + fmtPct(c.rate) + ")"],
        ["Partly refunded", fmtInt(c.partial) + " (" + fmtPct(c.partial_rate) + ")"],
        ["Refunded", money(c.refunded)]
      ])
    ], num(c.placed));
  }

  function drawLifecycle(s) {
    var stages = (s.report && s.report.lifecycle) || null;
    if (!stages) {
      drawCategoryBars("lifecycle", [], { empty: "No data yet: the report is not available." });
      return;
    }
    var items = STAGES.map(function (st) {
      return { key: st.key, label: st.label, value: num(stages[st.key]), color: "#0072B2" };
    });
    Object.keys(stages).forEach(function (k) {
      if (!STAGES.some(function (st) { return st.key === k; })) {
        items.push({ key: k, label: k, value: num(stages[k]), color: "#0072B2" });
      }
    });
    drawCategoryBars("lifecycle", items, {
      title: "Customers by lifecycle stage", xTitle: "Customers", showZeros: false,
      keyTitle: "Stage", valueTitle: "Customers", empty: "No data yet: no customer seen."
    });
  }

  function drawDeadLetters(s) {
    var dl = s.dead_letters || {};
    var items = Object.keys(dl).map(function (k) {
      return { key: k, label: k.replace(/_/g, " "), value: num(dl[k]), color: "#D55E00" };
    }).filter(function (i) { return i.value > 0; }).sort(function (a, b) { return b.value - a.value; });
    drawCategoryBars("dead-letters", items, {
      title: "Dead letters by reason", xTitle: "Messages", labelWidth: 150,
      keyTitle: "Reason", valueTitle: "Messages",
      empty: "No dead letters: every input message so far was usable."
    });
  }

  function drawLag(s) {
    var lag = (s.lag && s.lag.by_topic) || {};
    var items = Object.keys(lag).sort().map(function (k) {
      return { key: k, label: k, value: num(lag[k]), color: "#56B4E9" };
    });
    var box = chartBox("lag");
    if (!items.length) {
      setEmpty(box, "No data yet: no topics assigned.");
      return;
    }
    var longest = Math.max.apply(null, items.map(function (i) { return i.label.length; }));
    drawCategoryBars("lag", items, {
      title: "Consumer lag by topic", xTitle: "Messages not yet processed", showZeros: true,
      labelWidth: Math.min(240, Math.max(110, longest * 6.6 + 12)),
      zeroNote: "All caught up: no message is waiting on any topic.",
      keyTitle: "Topic", valueTitle: "Messages waiting", empty: "No data yet."
    });
  }

  function table(name, headers, rows) {
    var thead = html("thead", null, [html("tr", null, headers.map(function (h) {
      return html("th", { scope: "col" }, [h]);
    }))]);
    var tbody = html("tbody", null, rows.map(function (r) {
      return html("tr", r.attrs, r.cells.map(function (c, i) {
        return html(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : { "data-value": c.value, "data-key": c.key }, [c.text]);
      }));
    }));
    return html("div", { "class": "table-wrap" }, [html("table", { "class": "data", "data-table": name }, [thead, tbody])]);
  }

  function cell(text, value, key) { return { text: text, value: value === undefined ? text : value, key: key }; }

  /** Decisions per rule (every step together) and outcome: every outcome a firing can
   * have is a column, outranked included, so a rule that never lost one shows 0. */
  function drawRules(s) {
    var box = chartBox("rules");
    var rows = (s.decisions || []).filter(function (r) { return num(r.count) > 0; });
    if (!rows.length) {
      setEmpty(box, "No data yet: no reminder has fallen due.");
      return;
    }
    var outcomes = outcomesOf(s);
    var groups = {};
    rows.forEach(function (r) {
      var g = groups[r.rule] || (groups[r.rule] = { rule: r.rule, by: {}, total: 0 });
      g.by[r.outcome] = (g.by[r.outcome] || 0) + num(r.count);
      g.total += num(r.count);
      if (!outcomes.some(function (o) { return o.key === r.outcome; })) {
        outcomes.push(extraOutcome(r.outcome));
      }
    });
    var list = Object.keys(groups).map(function (k) { return groups[k]; }).sort(byRuleStep);
    var total = list.reduce(function (a, g) { return a + g.total; }, 0);
    var body = list.map(function (g) {
      return {
        attrs: { "data-rule": g.rule, "data-value": g.total },
        cells: [cell(ruleInfo(g.rule).label + " (" + g.rule + ")")].concat(outcomes.map(function (o) {
          var v = g.by[o.key] || 0;
          return cell(fmtInt(v), v, o.key);
        }), [cell(fmtInt(g.total), g.total, "total")])
      };
    });
    setReady(box, [table("rules", ["Rule"].concat(outcomes.map(function (o) { return o.label; }), ["Total"]), body)],
      total);
  }

  /** Decisions per rule and rule_version (every step together) and outcome: after a
   * rules change the old and the new version of a rule are rows of their own, and a
   * restart's skipped steps show as superseded (docs/rules.md "Changing rules"). */
  function drawVersions(s) {
    var box = chartBox("versions");
    var rows = (s.decisions_by_version || []).filter(function (r) { return num(r.count) > 0; });
    if (!rows.length) {
      setEmpty(box, "No data yet: no reminder has fallen due.");
      return;
    }
    var outcomes = outcomesOf(s);
    var groups = {};
    rows.forEach(function (r) {
      var version = r.rule_version || "";
      var key = r.rule + "@" + version;
      var g = groups[key] || (groups[key] = { rule: r.rule, version: version, by: {}, total: 0 });
      g.by[r.outcome] = (g.by[r.outcome] || 0) + num(r.count);
      g.total += num(r.count);
      if (!outcomes.some(function (o) { return o.key === r.outcome; })) {
        outcomes.push(extraOutcome(r.outcome));
      }
    });
    var list = Object.keys(groups).map(function (k) { return groups[k]; }).sort(function (a, b) {
      return byRuleStep(a, b) || (a.version < b.version ? -1 : a.version > b.version ? 1 : 0);
    });
    var total = list.reduce(function (a, g) { return a + g.total; }, 0);
    var body = list.map(function (g) {
      return {
        attrs: { "data-rule": g.rule, "data-version": g.version, "data-value": g.total },
        cells: [cell(ruleInfo(g.rule).label + " (" + g.rule + ")"), cell(g.version || "\u2013", g.version, "rule_version")]
          .concat(outcomes.map(function (o) {
            var v = g.by[o.key] || 0;
            return cell(fmtInt(v), v, o.key);
          }), [cell(fmtInt(g.total), g.total, "total")])
      };
    });
    setReady(box, [table("versions", ["Rule", "Version"].concat(outcomes.map(function (o) { return o.label; }), ["Total"]), body)],
      total);
  }

  function drawLift(s) {
    var box = chartBox("lift");
    var lift = ((s.report && s.report.lift) || []).slice().sort(byRuleStep);
    if (!lift.length) {
      setEmpty(box, "No data yet: no nudge has been delivered or held out.");
      return;
    }
    var rows = lift.map(function (r) {
      var dv = r.delivered || {}, ho = r.holdout || {};
      return {
        attrs: { "data-rule": r.rule, "data-step": r.step, "data-value": num(dv.firings) + num(ho.firings) },
        cells: [
          cell(ruleStepLabel(r.rule, r.step)),
          cell(fmtInt(dv.firings), num(dv.firings)),
          cell(fmtPct(dv.rate), dv.rate),
          cell(fmtInt(ho.firings), num(ho.firings)),
          cell(fmtPct(ho.rate), ho.rate),
          cell(r.lift_percent === null || r.lift_percent === undefined
            ? "\u2013" : (r.lift_percent > 0 ? "+" : "") + fmtNum(r.lift_percent, 1) + "%", r.lift_percent)
        ]
      };
    });
    var total = lift.reduce(function (a, r) {
      return a + num((r.delivered || {}).firings) + num((r.holdout || {}).firings);
    }, 0);
    setReady(box, [table("lift",
      ["Rule and step", "Nudged", "Bought again", "Holdout", "Bought again", "Lift"], rows),
    html("p", { "class": "note" }, ["\u2013 = cannot be computed yet: the holdout group is empty or nobody in it bought again."])], total);
  }

  function drawCohorts(s) {
    var box = chartBox("cohorts");
    var ttsp = (s.report && s.report.ttsp) || {};
    var cohorts = (ttsp.cohorts || []).slice().sort(function (a, b) { return a.cohort < b.cohort ? -1 : 1; });
    if (!cohorts.length) {
      setEmpty(box, "No data yet: no customer has ordered.");
      return;
    }
    var rowOf = function (c, label, attrs) {
      var rw = c.repeat_within || {};
      return {
        attrs: attrs,
        cells: [
          cell(label), cell(fmtInt(c.first_time_buyers), num(c.first_time_buyers)),
          cell(fmtInt(c.repeaters), num(c.repeaters)),
          cell(fmtNum(c.median_days, 1), c.median_days), cell(fmtNum(c.p75_days, 1), c.p75_days),
          cell(fmtNum(c.p90_days, 1), c.p90_days),
          cell(fmtPct(rw["30"]), rw["30"]), cell(fmtPct(rw["60"]), rw["60"]), cell(fmtPct(rw["90"]), rw["90"])
        ]
      };
    };
    var rows = cohorts.map(function (c) {
      return rowOf(c, c.cohort, { "data-cohort": c.cohort, "data-value": num(c.first_time_buyers) });
    });
    if (ttsp.overall) rows.push(rowOf(ttsp.overall, "All months", { "data-cohort": "overall", "class": "total" }));
    var total = cohorts.reduce(function (a, c) { return a + num(c.first_time_buyers); }, 0);
    setReady(box, [table("cohorts", ["First order in", "Buyers", "Bought again", "Median days",
      "75% within (days)", "90% within (days)", "Again \u2264 30 d", "\u2264 60 d", "\u2264 90 d"], rows)], total);
  }

  // ---- header and headline numbers --------------------------------------------------

  function setMetric(key, value, text, hint, warn) {
    var card = document.querySelector('[data-metric="' + key + '"]');
    if (!card) return;
    card.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
    card.querySelector(".value").textContent = text;
    if (hint !== undefined) card.querySelector(".hint").textContent = hint;
    card.classList.toggle("warn", Boolean(warn));
  }

  function fmtAge(seconds) {
    var n = Number(seconds);
    if (!isFinite(n)) return "?";
    return n < 10 ? n.toFixed(1) + " s" : n < 120 ? Math.round(n) + " s" : Math.round(n / 60) + " min";
  }

  // Workers that did not answer the cluster summary, for the banner.
  function missingWorkers(s) {
    var scope = s.scope || {};
    if (scope.scope !== "cluster") return null;
    var gone = (scope.workers || []).filter(function (w) { return !w.answered; });
    if (!gone.length) return null;
    return "Not every worker answered: " + gone.map(function (w) {
      return w.url + " (partitions " + (w.partitions || []).join(", ") + ": " + (w.error || "no answer") + ")";
    }).join("; ") + ". The numbers leave out their customers.";
  }

  function drawHeader(s) {
    var c = s.counts || {};
    setMetric("customers", num(c.customers), fmtInt(c.customers));
    setMetric("events", num(c.events), fmtInt(c.events),
      num(c.duplicates) ? fmtInt(c.duplicates) + " duplicates ignored" : "orders, sessions, consents, views, carts, sign-ups, cancellations");
    setMetric("decisions", num(c.decisions), fmtInt(c.decisions));
    setMetric("delivered", num(c.delivered), fmtInt(c.delivered));
    setMetric("dead_letters", num(c.dead_letters), fmtInt(c.dead_letters));
    var rpr = (s.report && s.report.rpr) || {};
    setMetric("rpr", rpr.rate === null || rpr.rate === undefined ? null : rpr.rate, fmtPct(rpr.rate),
      rpr.buyers ? fmtInt(rpr.repeaters) + " of " + fmtInt(rpr.buyers) + " buyers" : "buyers with 2+ orders");
    var lag = s.lag || {};
    setMetric("lag", num(lag.total), fmtInt(lag.total), "messages waiting");
    var rm = s.read_model || {};
    if (!rm.enabled) {
      setMetric("read_model_lag", null, "off", "Redis read model disabled");
    } else {
      setMetric("read_model_lag", num(rm.lag), fmtInt(rm.lag),
        rm.redis_up ? "Redis updates pending" : "Redis is down; catches up when back", !rm.redis_up);
    }

    var scope = s.scope || {};
    var parts = (scope.partitions || []).slice().sort(function (a, b) { return a - b; });
    var partText = parts.length
      ? "partition" + (parts.length > 1 ? "s " : " ") + parts.join(", ")
      : "no partitions yet";
    var scopeText;
    if (scope.scope === "cluster") {
      var workers = scope.workers || [];
      var answered = workers.filter(function (w) { return w.answered; }).length;
      scopeText = "cluster: " + answered + " of " + workers.length + " worker" +
        (workers.length === 1 ? "" : "s") + ", " + partText +
        (scope.all_partitions ? " (all of them)" : " (missing: " + (scope.missing_partitions || []).join(", ") + ")");
    } else {
      scopeText = "worker " + (scope.worker || "?") + ", " + partText +
        (scope.all_partitions ? " (all of them)" : " (its share only; other workers hold the rest)");
    }
    var scopeEl = document.getElementById("scope");
    scopeEl.textContent = scopeText;
    scopeEl.setAttribute("data-scope", scope.scope || "local");
    scopeEl.classList.toggle("warn", scope.scope === "cluster" && !scope.all_partitions);
    var fresh = s.freshness;
    var freshEl = document.getElementById("built");
    if (freshEl) {
      freshEl.setAttribute("data-age", fresh ? String(fresh.age_seconds) : "");
      freshEl.textContent = fresh
        ? fmtAge(fresh.age_seconds) + " old" + (fresh.refreshing ? ", refreshing" : "") +
          (fresh.last_error ? " (last rebuild failed: " + fresh.last_error + ")" : "")
        : "\u2013";
    }
    var clock = s.clock || {};
    document.getElementById("clock").textContent = clock.mode === "wall"
      ? "wall clock" + (clock.watermark ? ", now " + fmtTime(clock.watermark) : "")
      : "event time, up to " + (clock.watermark ? fmtTime(clock.watermark) : "\u2013 (no events yet)");
  }

  // ---- refresh loop ---------------------------------------------------------------------

  var DRAW = [drawTtsp, drawTriggers, drawDecisions, drawRules, drawVersions, drawSuppression,
    drawSendWindows, drawPAlive, drawLifecycle, drawFunnel, drawRecovered, drawCancellations,
    drawDeadLetters, drawLag, drawLift, drawCohorts];
  var state = { fetches: 0, lastOk: null };

  function refreshSeconds() {
    var raw = new URLSearchParams(window.location.search).get("refresh");
    var n = raw === null ? 5 : Number(raw);
    if (!isFinite(n) || n <= 0) n = 5;
    return Math.min(3600, Math.max(1, n));
  }

  function showBanner(message) {
    var b = document.getElementById("banner");
    if (message) {
      b.textContent = message;
      b.hidden = false;
    } else {
      b.hidden = true;
      b.textContent = "";
    }
  }

  function render(s) {
    var failed = [];
    [drawHeader].concat(DRAW).forEach(function (fn) {
      try {
        fn(s);
      } catch (err) {
        // A chart that cannot be drawn says so in place; the others still update.
        failed.push(fn.name.replace(/^draw/, ""));
        var name = fn.name.replace(/^draw/, "").replace(/[A-Z]/g, function (c, i) {
          return (i ? "-" : "") + c.toLowerCase();
        });
        var box = chartBox(name);
        if (box) {
          box.body.replaceChildren(html("p", { "class": "empty" }, ["Could not draw this chart: " + err.message]));
          box.fig.setAttribute("data-state", "error");
        }
      }
    });
    return failed;
  }

  function fetchSummary() {
    var ctrl = new AbortController();
    var timer = setTimeout(function () { ctrl.abort(); }, FETCH_TIMEOUT_MS);
    return fetch(SUMMARY_URL, { cache: "no-store", signal: ctrl.signal, headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) {
          return resp.text().then(function (body) {
            var detail = body;
            try { detail = JSON.parse(body).error || body; } catch (e) { /* plain text */ }
            throw new Error("HTTP " + resp.status + (detail ? ": " + String(detail).slice(0, 200) : ""));
          });
        }
        return resp.json();
      })
      .then(function (s) {
        if (!s || typeof s !== "object" || s.schema !== "summary/1") {
          throw new Error("unexpected answer (schema " + (s && s.schema) + ", expected summary/1)");
        }
        return s;
      })
      .finally(function () { clearTimeout(timer); });
  }

  function tick(every) {
    fetchSummary().then(function (s) {
      var failed = render(s);
      state.fetches += 1;
      state.lastOk = new Date();
      var updated = document.getElementById("last-updated");
      updated.textContent = clockText(state.lastOk) + " (your time)";
      updated.setAttribute("data-fetches", String(state.fetches));
      updated.setAttribute("data-generated-at", String(s.generated_at || ""));
      updated.setAttribute("title", "summary generated at " + (s.generated_at || "?"));
      var notes = [];
      if (failed.length) notes.push("Some charts could not be drawn: " + failed.join(", "));
      var missing = missingWorkers(s);
      if (missing) notes.push(missing);
      showBanner(notes.length ? notes.join(" ") : null);
    }).catch(function (err) {
      var reason = err && err.name === "AbortError" ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s"
        : (err && err.message) || String(err);
      showBanner("Could not load the latest numbers from " + SUMMARY_URL + " (" + reason + "). " +
        (state.lastOk ? "Showing the numbers from " + clockText(state.lastOk) + ". " : "") +
        "Trying again every " + every + " s.");
    }).then(function () {
      setTimeout(function () { tick(every); }, every * 1000);
    });
  }

  function start() {
    var every = refreshSeconds();
    document.getElementById("refresh-every").textContent = "every " + every + " s";
    tick(every);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
