// The issue's targets, each checked against the figures of one run: measured value, limit, met or not.

export class Targets {
  list = [];

  /** A value that must stay at or under limit; unit "×" for ratios, else the unit's name (ms, MB, tokens). */
  add(name, value, limit, unit = "×") {
    const met = Number.isFinite(value) && value <= limit;
    this.list.push({ name, value, limit, unit, met });
  }

  /** A target that could not be measured in this run: not met, with the reason. */
  missing(name, limit, unit, why) {
    this.list.push({ name, value: null, limit, unit, met: false, why });
  }

  render() {
    const fmt = (v, unit, digits = 2) =>
      unit === "×" ? `${v.toFixed(digits)}×` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${unit}`;
    // A value just over its limit gets one more digit, so that it never reads as equal to it.
    const shown = (t) => {
      const close = !t.met && t.value.toFixed(2) === t.limit.toFixed(2);
      return fmt(t.value, t.unit, close ? 3 : 2);
    };
    const rows = this.list.map(
      (t) =>
        `| ${t.name} | ${t.value === null ? `not measured: ${t.why}` : shown(t)} | ≤ ${fmt(t.limit, t.unit)} | ${t.met ? "met" : "**not met**"} |`,
    );
    const met = this.list.filter((t) => t.met).length;
    return [
      `### Targets: ${met} of ${this.list.length} met`,
      "",
      "| Target | measured | limit | |",
      "|---|---:|---:|---|",
      ...rows,
    ].join("\n");
  }
}
