"""Render an HTML report to PNG pages: WeasyPrint (HTML/CSS, no JS) -> PDF -> pypdfium2."""

import sys
from pathlib import Path

import pypdfium2 as pdfium
from weasyprint import CSS, HTML

src, out = Path(sys.argv[1]), Path(sys.argv[2])
pdf = out.with_suffix(".pdf")
HTML(filename=str(src), base_url=str(src.parent)).write_pdf(
    str(pdf), stylesheets=[CSS(string="@page { size: 1100px 1500px; margin: 12px }")]
)
doc = pdfium.PdfDocument(str(pdf))
for i in range(min(len(doc), int(sys.argv[3]) if len(sys.argv) > 3 else 3)):
    img = doc[i].render(scale=1.0).to_pil()
    p = out.parent / f"{out.stem}-{i + 1}.png"
    img.save(p, optimize=True)
    print(p, img.size, p.stat().st_size)
