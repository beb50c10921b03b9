/** The pages' own stylesheet, served as /web/assets/page.css (no inline styles in the HTML). */
export const PAGE_CSS = `
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { margin: 0; display: flex; flex-direction: column; height: 100vh; }
header { display: flex; gap: 1.5rem; align-items: baseline; padding: .5rem 1rem; border-bottom: 1px solid #8884; flex-wrap: wrap; }
header h1 { font-size: 1.2rem; margin: 0; }
main { display: flex; flex: 1; min-height: 0; }
#lab { width: 32%; min-width: 18rem; overflow: auto; padding: 0 1rem; border-right: 1px solid #8884; }
#terminals { flex: 1; display: flex; flex-direction: column; min-width: 0; }
#tabs { display: flex; gap: .25rem; padding: .25rem; }
#tabs button[aria-selected="true"] { font-weight: bold; border-bottom: 2px solid #36c; }
#notices { font-size: .85rem; color: #b70; padding: 0 .5rem; }
#notices:empty { display: none; }
#panes { flex: 1; position: relative; background: #000; }
.pane { position: absolute; inset: 0; padding: 4px; }
.pane[hidden] { display: none; }
.buttons { display: flex; gap: .5rem; margin: 1rem 0; }
#output { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .9rem; }
.pass { color: #2a2; } .fail { color: #d33; }
.ended { padding: 2rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
th, td { text-align: left; padding: .2rem .5rem; border-bottom: 1px solid #8883; font-size: .9rem; }
.admin main { flex-direction: column; padding: 0 1rem; overflow: auto; }
#feed { font-family: ui-monospace, monospace; font-size: .8rem; max-height: 16rem; overflow: auto; }
.chart { width: 160px; height: 32px; }
td button + button { margin-left: .25rem; }
#action-status { min-height: 1.2rem; margin: .5rem 0 0; }
.ended form { display: flex; flex-direction: column; gap: .5rem; max-width: 22rem; }
.chart .warm { stroke: #2a2; fill: none; } .chart .used { stroke: #36c; fill: none; }
`;
