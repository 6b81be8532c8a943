import Foundation

extension ReportBook {
    /// One self-contained HTML page of every table and chart (`imgbench report --html FILE`):
    /// the charts inline as SVG, the styles inline, nothing fetched, so it reads offline and can
    /// be kept as a CI artifact. A small script marks each chart `data-drawn="yes"` once the
    /// browser has laid out its bars (what the tests check in headless Chromium).
    public func html(title: String = "imgbench results") -> String {
        var body = ""
        body += "<h1>\(Self.xml(title))</h1>\n"
        body += "<p class=\"lead\">Containers beside VMs, as Sharma et al. (Middleware 2016) and Felter et al. (IBM 2014) compared them: "
            + "build time, image size, the cost of one more instance, copy-on-write write overhead, wasted bytes and the runtime workloads.</p>\n"
        if let made = madeText { body += "<p class=\"made\">\(Self.xml(made))</p>\n" }
        if tables.isEmpty { body += "<p>No tables: the results given hold none.</p>\n" }
        for (i, t) in tables.enumerated() {
            body += "<section class=\"table\" id=\"t\(i)\">\n<h2>\(Self.xml(t.title))</h2>\n"
            body += "<table>\n<thead><tr><th></th>" + t.columns.map { "<th>\(Self.xml($0))</th>" }.joined() + "</tr></thead>\n<tbody>\n"
            for (ri, r) in t.rows.enumerated() {
                body += "<tr><th>\(Self.xml(r.label))</th>"
                for (ci, v) in r.values.enumerated() {
                    var cell = Self.xml(t.format(v))
                    if let range = t.range(ri, ci), range.lowerBound != range.upperBound {
                        cell += " <span class=\"spread\">(\(Self.xml(t.format(range.lowerBound))) to \(Self.xml(t.format(range.upperBound))))</span>"
                    }
                    body += "<td>\(cell)</td>"
                }
                body += "</tr>\n"
            }
            body += "</tbody>\n</table>\n<p class=\"note\">\(Self.xml(t.note))</p>\n"
            if t.charted && !t.rows.isEmpty { body += "<figure>\n\(svg(t))</figure>\n" }
            body += "</section>\n"
        }
        body += "<footer><p>Sources:</p><ul>" + sources.map { "<li>\(Self.xml($0.path)) (\(Self.xml($0.kind)))</li>" }.joined() + "</ul></footer>\n"
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>\(Self.xml(title))</title>
            <style>
            body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
            table { border-collapse: collapse; margin: 0.5em 0; }
            th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
            td { text-align: right; font-variant-numeric: tabular-nums; }
            thead th { background: #f3f3f3; }
            tbody th { text-align: left; font-weight: normal; }
            .spread, .note, .made { color: #555; font-size: 0.9em; }
            figure { margin: 0.5em 0 2em; overflow-x: auto; }
            </style>
            </head>
            <body>
            \(body)<script>
            window.addEventListener("load", function () {
              var charts = document.querySelectorAll("svg.chart"), drawn = 0;
              charts.forEach(function (svg) {
                var bars = svg.querySelectorAll("rect.bar"), visible = 0;
                bars.forEach(function (b) { var r = b.getBoundingClientRect(); if (r.width > 0 && r.height > 0) visible++; });
                var box = svg.getBoundingClientRect();
                if (box.width > 0 && box.height > 0 && (bars.length == 0 || visible > 0)) { svg.setAttribute("data-drawn", "yes"); drawn++; }
                svg.setAttribute("data-bars", String(visible));
              });
              document.body.setAttribute("data-charts-drawn", String(drawn));
            });
            </script>
            </body>
            </html>

            """
    }
}
