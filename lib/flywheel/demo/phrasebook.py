"""The demo world's phrasebook: what employees ask each expert, how they ask it, and how it goes.

Everything here is invented. Templates hold ``{slot}`` placeholders that the generator fills from
``SLOTS``. Intents are keyed by a short topic label (used in answers and comments). The vocabulary
deliberately overlaps between experts (pay, card, access, claim, portal, license, report ...) so that a
bag-of-words router has to work for its accuracy, while a large LLM that reads the whole question does not.
"""

from __future__ import annotations

# --- slot fillers -------------------------------------------------------------------------------------------

SLOTS: dict[str, list[str]] = {
    "product": [
        "Helios SDK",
        "Aurora Inference Server",
        "Nimbus driver",
        "Quasar API",
        "Vega Toolkit",
        "Orion Data Platform",
        "Atlas CLI",
        "Lumen Analytics",
        "Pulsar Runtime",
    ],
    "version": ["2.4", "2.5.1", "2.6", "5.1", "5.2.3", "11.0", "1.8", "3.2"],
    "version2": ["2.7", "6.0", "12.1", "1.9", "4.0"],
    "api": [
        "/v2/infer",
        "stream_open()",
        "batch_submit",
        "/models/list",
        "create_session()",
        "set_precision()",
    ],
    "gpu": ["A40 card", "X900 accelerator", "L20 board", "the new R-series GPU", "T8 module"],
    "code": ["1043", "2201", "17", "503", "3009", "88"],
    "app": [
        "Outlook",
        "Slack",
        "Zoom",
        "Jira",
        "Confluence",
        "GitHub",
        "Workday",
        "Concur",
        "VS Code",
        "Docker Desktop",
        "Teams",
        "Tableau",
        "Figma",
        "Excel",
    ],
    "laptop": ["MacBook Pro", "ThinkPad X1", "Dell XPS", "laptop", "Mac", "ThinkPad"],
    "os": ["macOS 16", "Windows 11", "Ubuntu 24.04", "RHEL 9", "Windows"],
    "error": [
        "error 0x80070005",
        "ERR_CERT_AUTHORITY_INVALID",
        "403 forbidden",
        "error code 809",
        "'gateway not responding'",
        "AADSTS50076",
        "timeout",
    ],
    "language": ["Python", "C++", "Rust", "Java", "Go", "CUDA"],
    "team": ["platform", "data science", "sales ops", "compiler", "design", "security", "marketing"],
    "plan": ["PPO Plus", "HDHP with HSA", "Kaiser HMO", "Dental Basic", "Vision Plus", "PPO Basic"],
    "plan2": ["HDHP", "PPO", "HMO", "high deductible plan", "PPO Plus"],
    "city": [
        "Santa Clara",
        "Austin",
        "Munich",
        "Tel Aviv",
        "Bangalore",
        "Tokyo",
        "Taipei",
        "London",
        "Toronto",
        "New York",
        "Seattle",
        "Shanghai",
        "Paris",
    ],
    "country": ["Germany", "India", "Japan", "Israel", "the UK", "Canada", "Taiwan", "Brazil"],
    "state": ["Texas", "Washington", "New York", "Oregon", "Colorado"],
    "date": ["Oct 3", "9/15", "the 28th", "Monday", "Sept 30", "10/12", "Thursday", "the 1st"],
    "month": ["September", "October", "November", "December", "March", "June"],
    "amount": ["$45", "$1,280", "$312.50", "€90", "$2,400", "$68.20", "$150", "£220"],
    "quarter": ["Q3", "Q2 FY27", "third quarter", "Q4", "Q1", "last quarter"],
    "building": ["Building E", "Endeavor", "Voyager", "B12", "HQ2", "the Austin office", "Building C"],
    "floor": ["3rd floor", "floor 2", "4th floor", "ground floor", "level 5"],
    "room": ["Cassini", "Hubble", "Kepler", "Galileo", "Ride", "Lovelace"],
    "airline": ["United", "Delta", "Lufthansa", "Southwest", "Air Canada", "ANA"],
    "hotel": ["Marriott", "Hilton", "Hyatt", "an Airbnb", "the Westin"],
}

# Filled by code, not lists: ticket numbers and the like.
NUMERIC_SLOTS = {"ticket": ("INC", 7), "kb": ("KB-", 4), "report": ("ER-", 6)}

# --- in-scope intents: expert -> topic -> templates --------------------------------------------------------

INTENTS: dict[str, dict[str, list[str]]] = {
    "it_help": {
        "VPN connection": [
            "vpn keeps disconnecting every few minutes",
            "can't connect to the VPN from {city}",
            "GlobalProtect says gateway not responding when I try to connect",
            "VPN drops whenever I join a {app} call",
            "is the vpn down? getting {error}",
            "how do I connect to the corporate network from home",
        ],
        "password reset": [
            "how do I reset my password",
            "locked out of my account after too many attempts",
            "my password expired and now I can't log in to {app}",
            "forgot my SSO password and I'm only on my phone",
            "password change isn't syncing to {app}",
        ],
        "multi-factor authentication": [
            "got a new phone, how do I move my MFA to it",
            "Okta push notifications stopped arriving",
            "lost my yubikey, how do I get back in",
            "MFA prompt loops forever when I open {app}",
        ],
        "laptop repair": [
            "my {laptop} screen flickers constantly",
            "laptop battery looks swollen, is it safe to use",
            "keyboard on my {laptop} stopped working after the update",
            "laptop won't boot, stuck on the logo",
            "spilled coffee on my {laptop}, what now",
        ],
        "laptop refresh": [
            "when am I eligible for a laptop refresh",
            "my {laptop} is 4 years old, can I get a new one",
            "how do I request a replacement laptop",
            "can I get a bigger laptop for builds, mine has 16GB RAM",
        ],
        "software install": [
            "how do I install {app} on my work laptop",
            "need admin rights to install the {language} toolchain",
            "self service doesn't show {app}, how do I get it",
            "is {app} approved software or do I need an exception",
        ],
        "email and Outlook": [
            "outlook keeps asking for my password",
            "can't send emails with attachments over 20MB",
            "how do I set up an out-of-office reply",
            "shared mailbox not showing up in Outlook",
            "emails from customers going to junk",
        ],
        "mailing lists": [
            "how do I create a distribution list",
            "add me to the {team} mailing list please",
            "who owns the eng-all list, I want to unsubscribe",
        ],
        "office wifi": [
            "office wifi keeps dropping in {building}",
            "which wifi should I use on site, corp or guest",
            "wifi certificate expired on my laptop",
        ],
        "printing": [
            "how do I add the printer on the {floor}",
            "printer says offline but it's on",
            "print jobs stuck in the queue",
        ],
        "access requests": [
            "need access to the {team} shared drive",
            "how do I request access to {app}",
            "permission denied on the {team} Confluence space",
            "how do I get added to the GitHub org",
            "access request has been pending for a week",
        ],
        "new hire setup": [
            "new hire starts Monday, how do we get their laptop and accounts ready",
            "what IT accounts does a new hire get on day one",
            "my new team member has no email account yet",
        ],
        "peripherals": [
            "second monitor not detected through the usb-c dock",
            "where do I request a headset for calls",
            "dock doesn't charge my {laptop}",
            "mouse and keyboard for my home setup, who provides those",
        ],
        "phishing and security": [
            "I think I clicked a phishing link",
            "got a suspicious email asking for my credentials, how do I report it",
            "the report phishing button is missing in Outlook",
            "someone texted me pretending to be the CEO",
        ],
        "OS updates": [
            "{os} update stuck at 30%",
            "can I postpone the forced restart for the update",
            "is it safe to upgrade to {os} yet",
        ],
        "disk encryption": [
            "bitlocker is asking for a recovery key at boot",
            "filevault wants a recovery key, where do I find it",
        ],
        "collaboration apps": [
            "{app} crashes on launch",
            "zoom audio not working on my laptop",
            "slack notifications not arriving on desktop",
            "screen sharing in {app} shows a black screen",
        ],
        "mobile device setup": [
            "how do I set up work email on my iphone",
            "enroll my android phone in Intune",
            "company portal app says my phone is not compliant",
        ],
        "remote machines": [
            "can't RDP into my dev box",
            "ssh to the build server times out",
            "how do I request a linux dev VM",
        ],
        "file storage": [
            "onedrive sync is stuck",
            "out of storage on my home drive",
            "how do I recover a deleted file from the team share",
        ],
        "offboarding devices": [
            "how do I return my laptop when I leave",
            "my contractor's account got disabled a week early",
            "wipe my old laptop before handing it back?",
        ],
        "calendar": [
            "calendar invites show the wrong timezone",
            "can't see my manager's calendar",
            "meeting invites from external people don't show up",
        ],
        "certificates and browsers": [
            "{error} in chrome on internal sites",
            "intranet says the certificate is invalid",
            "internal sites won't load in firefox",
        ],
        "IT tickets": [
            "what's the status of my ticket {ticket}",
            "how do I escalate an IT ticket",
            "who do I call for urgent IT help after hours",
        ],
        "tool licenses": [
            "my jetbrains license expired",
            "need a visio license for a diagram",
            "license for {app} says it's expired",
        ],
        "git and code access": [
            "ssh key not accepted by github enterprise",
            "can't clone the repo, getting 403",
            "personal access token stopped working",
        ],
    },
    "hr_benefits": {
        "medical plan enrollment": [
            "how do I enroll in the {plan} plan",
            "when is the open enrollment deadline",
            "can I switch from {plan} to {plan2} mid year",
            "which medical plan is better for a family of four",
            "difference between the {plan2} and the {plan}",
        ],
        "adding dependents": [
            "how do I add my newborn to my health insurance",
            "add my spouse to medical after we got married",
            "what's the deadline to add a dependent after a life event",
            "can I cover my domestic partner",
        ],
        "401k plan": [
            "how do I change my 401k contribution",
            "what's the company 401k match",
            "what's the 401k vesting schedule",
            "roth vs traditional 401k, which options do we have",
            "how do I roll over my old 401k into ours",
        ],
        "parental leave": [
            "how much parental leave do we get",
            "can I split parental leave into two blocks",
            "bonding leave for an adoption, how does it work",
            "when should I tell HR about parental leave",
        ],
        "vacation and PTO": [
            "how many vacation days do I have left",
            "does unused PTO roll over to next year",
            "can I take unpaid leave for a month",
            "how much PTO do I get after 5 years",
        ],
        "sick leave": [
            "how do I log a sick day",
            "extended sick leave, what do I need from my doctor",
            "can I use sick days to care for my kid",
        ],
        "FSA and HSA": [
            "is my HSA money mine if I leave the company",
            "FSA deadline for submitting claims",
            "what can I buy with my FSA card",
            "HSA contribution limit for 2026",
            "dependent care FSA, how much can I put in",
        ],
        "dental coverage": [
            "is orthodontics covered for my kid",
            "how do I find an in-network dentist",
            "does dental cover implants",
        ],
        "vision coverage": [
            "how often are new glasses covered",
            "does the vision plan cover contacts",
            "is lasik covered at all",
        ],
        "wellness program": [
            "what does the wellness benefit cover",
            "are meditation apps covered by the wellness program",
            "how much is the annual wellness allowance",
        ],
        "mental health support": [
            "is therapy covered by our insurance",
            "what's the number for the confidential EAP counselling line",
            "do we have mental health days",
            "how many therapy sessions are free",
        ],
        "life and disability insurance": [
            "how much life insurance do we have through work",
            "how do I apply for short term disability",
            "how do I update my beneficiary",
            "can I buy extra life insurance",
        ],
        "leave of absence": [
            "what's the process for a medical leave of absence",
            "do we have a sabbatical policy",
            "how does military leave work here",
        ],
        "bereavement leave": [
            "how many days of bereavement leave do we get",
            "my father passed away, what leave can I take",
        ],
        "company holidays": [
            "where's the company holiday calendar for 2026",
            "is the day after thanksgiving a holiday",
            "how do floating holidays work",
        ],
        "benefits eligibility": [
            "do interns get health benefits",
            "what happens to my benefits if I go part time",
            "when do benefits start for a new hire",
        ],
        "benefits after leaving": [
            "what happens to my health insurance when I leave",
            "how does COBRA work",
            "how long am I covered after my last day",
        ],
        "fertility and family forming": [
            "what fertility benefits do we have",
            "is IVF covered",
            "adoption assistance amount",
            "is egg freezing covered",
        ],
        "insurance cards": [
            "where do I get my medical insurance ID card",
            "never received my insurance card",
            "need a replacement dental card",
        ],
        "insurance claims": [
            "my medical claim got denied",
            "how do I submit an out-of-network claim",
            "the insurer says I'm not enrolled",
        ],
        "return from leave": [
            "what's the process to return from leave",
            "can I do a phased return after parental leave",
            "coming back from disability leave next week, what do I do",
        ],
        "perks and discounts": [
            "what employee discount programs do we have",
            "do we offer pet insurance",
            "is there a discount on phones for employees",
        ],
        "childcare": [
            "do we have backup childcare",
            "childcare subsidy, how much",
            "elder care support options",
        ],
    },
    "payroll_equity": {
        "pay slips": [
            "where can I find my payslip",
            "download last month's pay stub",
            "my payslip shows the wrong hours",
            "need pay stubs for a mortgage application",
        ],
        "pay dates": [
            "when is payday this month",
            "is pay on {date} or the day before because of the holiday",
            "pay schedule, biweekly or semi-monthly",
        ],
        "direct deposit": [
            "how do I change my bank account for direct deposit",
            "my paycheck didn't arrive today",
            "can I split my pay between two accounts",
        ],
        "tax forms": [
            "where is my W-2",
            "lost my W-2 from last year",
            "how do I get a 1099 for my contractor time",
            "where do I get my annual tax statement in {country}",
        ],
        "tax withholding": [
            "how do I update my W-4",
            "too much tax is being withheld from my pay",
            "change my state tax after moving to {state}",
            "claimed exempt by mistake, how to fix",
        ],
        "bonus payments": [
            "when is the annual bonus paid",
            "why is my bonus taxed at a higher rate",
            "bonus didn't show up on my paycheck",
            "how is the bonus prorated for new hires",
        ],
        "RSU vesting": [
            "when do my RSUs vest",
            "where can I see my RSU vest schedule",
            "how many shares vest in {month}",
            "what happens to unvested RSUs if I go on leave",
        ],
        "ESPP enrollment": [
            "how do I enroll in the ESPP",
            "change my ESPP contribution percentage",
            "how long is the ESPP offering period",
            "can I withdraw from the ESPP mid period",
        ],
        "ESPP purchases": [
            "how is the ESPP discount calculated",
            "why did ESPP buy fewer shares than I expected",
            "ESPP lookback price, how does it work",
        ],
        "selling shares": [
            "how do I sell my vested shares",
            "transfer shares from the broker to my own account",
            "can't log into the brokerage account to sell",
            "sell-to-cover, what does it mean",
        ],
        "salary changes": [
            "my raise isn't reflected in my paycheck",
            "when does the merit increase take effect",
            "salary change after promotion not showing",
        ],
        "overtime and hours": [
            "overtime not paid for last period",
            "how do hourly employees submit timesheets",
            "shift differential missing from pay",
        ],
        "final pay": [
            "when do I get my final paycheck",
            "last paycheck after resignation, what's included",
        ],
        "payroll deductions": [
            "what's this deduction on my paystub",
            "I have a wage garnishment question",
            "why did my net pay go down this month",
        ],
        "equity grants": [
            "when are refresh grants given out",
            "my new hire grant isn't in the equity portal",
            "how is the number of RSUs in my grant calculated",
        ],
        "international payroll": [
            "I'm transferring to {country}, how does payroll move",
            "paid in euros while working in {city}, who handles it",
            "tax equalization for my international assignment",
        ],
        "equity portal": [
            "can't see my grants in the equity portal",
            "equity portal shows zero shares",
            "where do I accept my stock grant",
        ],
        "sign-on bonus": [
            "do I have to repay my sign-on bonus if I leave",
            "when is the sign on bonus paid",
        ],
        "equity tax documents": [
            "where's the 1099-B for my share sales",
            "cost basis on my RSU sale looks wrong",
            "supplemental tax statement for equity",
        ],
        "payroll corrections": [
            "I was underpaid last month",
            "I was overpaid, how do I pay it back",
            "off-cycle payment for a missed commission",
        ],
        "pay statements name and address": [
            "my paystub still shows my old address",
            "update my legal name on payroll",
        ],
        "10b5-1 trading plans": [
            "how do I set up a 10b5-1 plan",
            "can I change my 10b5-1 plan",
        ],
    },
    "finance_earnings": {
        "earnings dates": [
            "when are {quarter} earnings",
            "what's the date of the next earnings call",
            "are we reporting before or after market close",
        ],
        "revenue results": [
            "what was revenue last quarter",
            "data center revenue growth in {quarter}",
            "how much did revenue grow year over year",
            "record revenue? what was the number",
        ],
        "guidance": [
            "what guidance did we give for next quarter",
            "did we raise the full year outlook",
            "revenue outlook for {quarter}",
        ],
        "earnings call materials": [
            "where's the {quarter} earnings call transcript",
            "replay of the earnings webcast",
            "link to the earnings press release",
        ],
        "gross margin": [
            "what was gross margin in {quarter}",
            "why did gross margin drop",
            "gross margin outlook",
        ],
        "segment results": [
            "how did the gaming segment do",
            "automotive revenue in {quarter}",
            "professional visualization numbers",
        ],
        "investor presentations": [
            "where's the latest investor presentation",
            "investor day slides from this year",
            "slides the CEO used at the analyst meeting",
        ],
        "SEC filings": [
            "where can I find the 10-K",
            "latest 10-Q filing",
            "annual report pdf",
        ],
        "buybacks and dividends": [
            "how much stock did we buy back last quarter",
            "what's the dividend per share",
            "when is the next dividend paid",
        ],
        "stock performance": [
            "why did the stock drop after earnings",
            "what's our market cap today",
            "how did the stock react to the results",
        ],
        "analyst expectations": [
            "what did analysts expect for EPS",
            "did we beat consensus in {quarter}",
            "street estimates for next quarter",
        ],
        "earnings per share": [
            "GAAP vs non-GAAP EPS for {quarter}",
            "diluted EPS last quarter",
        ],
        "fiscal calendar": [
            "when does fiscal year 2027 start",
            "fiscal quarter end dates",
            "why is our fiscal year different from the calendar year",
        ],
        "operating expenses": [
            "how much did opex grow",
            "R&D spend as a share of revenue",
            "operating income last quarter",
        ],
        "cash and balance sheet": [
            "free cash flow last quarter",
            "how much cash do we have on the balance sheet",
            "do we have any debt",
        ],
        "shareholder meeting": [
            "when is the annual shareholder meeting",
            "where's the proxy statement",
            "results of the shareholder vote",
        ],
        "CFO commentary": [
            "where's the CFO commentary document",
            "what did the CFO say about supply",
        ],
        "quiet period": [
            "can I talk to a customer about our quarterly results",
            "what are the quiet period rules before earnings",
            "a reporter asked me about revenue, what do I say",
        ],
        "revenue by region": [
            "how much revenue comes from China",
            "revenue by geography",
            "what share of revenue is international",
        ],
        "acquisitions": [
            "how much did we pay for the last acquisition",
            "financial impact of the acquisition on earnings",
        ],
        "inventory and supply": [
            "was there an inventory write-down",
            "supply constraints mentioned on the call",
        ],
        "investor relations contact": [
            "who do I send investor questions to",
            "an investor emailed me, who handles investor relations",
        ],
        "historical financials": [
            "revenue for the last five years",
            "where do I find historical quarterly results",
        ],
    },
    "product_docs": {
        "SDK installation": [
            "how do I install {product} on {os}",
            "pip install of {product} fails",
            "{product} install guide for offline machines",
            "conda package for {product}?",
        ],
        "API reference": [
            "where's the API reference for {product}",
            "docs for the {api} call",
            "what parameters does {api} take",
        ],
        "release notes": [
            "release notes for {product} {version}",
            "what changed in {product} {version}",
            "changelog between {version} and {version2}",
        ],
        "compatibility": [
            "is {product} {version} compatible with {os}",
            "supported GPUs for {product}",
            "which {language} versions does {product} support",
        ],
        "driver versions": [
            "which driver version do I need for {product} {version}",
            "minimum driver for the {gpu}",
            "driver compatibility table for {product}",
        ],
        "code samples": [
            "sample code for streaming with {product}",
            "{language} example for {api}",
            "is there a hello world for {product}",
        ],
        "error codes": [
            "what does {product} error E{code} mean",
            "{product} segfaults on init",
            "{api} returns status {code}, what does that mean",
        ],
        "deprecations and migration": [
            "is {api} deprecated",
            "migration guide from {version} to {version2}",
            "what replaces {api} in {product} {version2}",
        ],
        "performance tuning": [
            "best practices for batching in {product}",
            "performance tuning guide for {product}",
            "how do I profile {product} workloads",
        ],
        "open source and licensing terms": [
            "is {product} open source",
            "what license is {product} released under",
            "can customers redistribute the {product} binaries",
        ],
        "container images": [
            "where's the docker image for {product}",
            "container tags for {product} {version}",
            "helm chart for {product}",
        ],
        "configuration": [
            "config file options for {product}",
            "environment variables {product} reads",
            "how do I enable debug logging in {product}",
        ],
        "getting started": [
            "getting started guide for {product}",
            "quickstart for {product} in {language}",
            "tutorial for {product} for a new customer",
        ],
        "known issues": [
            "known issues in {product} {version}",
            "is the memory leak in {product} {version} fixed",
        ],
        "benchmarks": [
            "published benchmarks for {product}",
            "throughput numbers for the {gpu}",
            "MLPerf results for the {gpu}",
        ],
        "security bulletins": [
            "security bulletin for {product} {version}",
            "where are product security advisories published",
        ],
        "architecture concepts": [
            "how does {product} handle memory pooling",
            "explain the scheduler in {product}",
            "what is a session in {product}",
        ],
        "product lifecycle": [
            "end of life date for {product} {version}",
            "how long is {product} {version} supported",
            "LTS releases of {product}",
        ],
        "customer documentation": [
            "where do I send a customer for {product} docs",
            "public docs link for {product}",
            "is there a PDF version of the {product} manual",
        ],
        "broken docs": [
            "the {product} docs page has a broken link",
            "docs search returns nothing for {api}",
            "typo in the {product} install guide",
        ],
        "CLI reference": [
            "{product} cli flags reference",
            "what does --fast-path do in the {product} cli",
        ],
        "framework integration": [
            "how to use {product} with PyTorch",
            "kubernetes operator for {product}",
            "does {product} work with ONNX models",
        ],
        "hardware specs": [
            "specs of the {gpu}",
            "memory bandwidth of the {gpu}",
            "power draw of the {gpu}",
        ],
        "firmware": [
            "firmware update for the {gpu}",
            "how to check firmware version on the {gpu}",
        ],
    },
    "travel_expenses": {
        "booking flights": [
            "how do I book a flight to {city}",
            "which tool do we use for travel booking",
            "can I book {airline} directly on their site",
            "booking a trip to {city} for a customer meeting",
        ],
        "hotel policy": [
            "what's the hotel rate limit in {city}",
            "can I stay at {hotel} for a work trip",
            "hotel is above the cap, is that ok",
        ],
        "per diem and meals": [
            "what's the per diem for {city}",
            "meal allowance on business trips",
            "is breakfast covered if the hotel doesn't include it",
        ],
        "submitting expense reports": [
            "how do I submit an expense report",
            "how do I attach receipts in Concur",
            "expense report for my trip to {city}",
            "deadline for submitting expenses after a trip",
        ],
        "reimbursement status": [
            "what's the status of my expense report {report}",
            "when will I get reimbursed for {amount}",
            "my expense report was rejected",
            "reimbursement still not paid after 3 weeks",
        ],
        "corporate card": [
            "how do I apply for a corporate card",
            "corporate card declined in {city}",
            "can I get a higher limit on my corporate card",
            "lost my corporate card",
            "corporate card statement doesn't match my report",
        ],
        "missing receipts": [
            "lost a receipt, what do I do",
            "missing receipt affidavit form",
            "taxi didn't give me a receipt",
        ],
        "mileage": [
            "what's the mileage reimbursement rate",
            "drove my own car to a customer site, how do I claim",
        ],
        "travel approval": [
            "who approves international travel",
            "do I need pre-trip approval for {city}",
            "manager is out, who can approve my trip",
        ],
        "class of service": [
            "can I fly business class on a 10 hour flight",
            "is premium economy allowed",
            "can I pay for an upgrade myself",
        ],
        "visas and invitation letters": [
            "need a visa invitation letter for {city}",
            "does the company pay for my visa fees",
            "visa support for a conference in {country}",
        ],
        "conference registration": [
            "can I expense a conference registration",
            "how do I pay for a conference ticket",
            "conference in {city} costs {amount}, who approves",
        ],
        "client entertainment": [
            "what's the limit for a client dinner",
            "is alcohol expensable at a customer dinner",
            "team dinner with a customer in {city}, how to expense",
        ],
        "ground transport": [
            "is uber to the airport reimbursable",
            "rental car insurance, do I take it",
            "train vs rental car for a trip to {city}",
        ],
        "travel disruptions": [
            "my {airline} flight got cancelled, what now",
            "stuck in {city} because of a storm, can I expense an extra night",
            "missed my connection, who rebooks me",
        ],
        "foreign currency": [
            "expenses in euros, which exchange rate is used",
            "foreign transaction fee on my card, is it reimbursed",
        ],
        "personal card reimbursement": [
            "paid for the hotel with my personal card, how do I get it back",
            "used my own card because the corporate one was declined",
        ],
        "travel safety": [
            "do I need to register my trip to {country} for travel safety",
            "travel insurance coverage for business trips",
        ],
        "team events budget": [
            "how do I expense a team offsite dinner",
            "budget per person for a team event",
        ],
        "booking changes": [
            "how do I change my flight",
            "cancel a hotel booking made in the travel tool",
            "change fee for my flight, who pays",
        ],
        "loyalty programs": [
            "can I keep airline miles from work trips",
            "hotel points on business stays, allowed?",
        ],
        "expense policy": [
            "what is not reimbursable",
            "where's the expense policy",
            "are tips reimbursable",
        ],
        "customer gifts": [
            "can I buy a gift for a customer",
            "limit on gifts to partners",
        ],
    },
    "facilities": {
        "badge access": [
            "my badge isn't working",
            "badge doesn't open the doors at {building}",
            "need badge access to the {floor}",
            "badge reader at the side entrance is broken",
        ],
        "lost badges": [
            "lost my badge",
            "forgot my badge at home, can I get a temporary one",
            "badge photo is wrong, can I redo it",
        ],
        "visitors": [
            "how do I register a visitor",
            "guest badge for an interview candidate",
            "customers visiting {building} on {date}, what do I do",
        ],
        "parking": [
            "where do I park at {building}",
            "how do I get a parking permit",
            "are there EV chargers in the garage",
            "the garage is always full by 9, any overflow parking",
        ],
        "desk booking": [
            "how do I book a desk in {building}",
            "reserve desks for my team on {date}",
            "is there a permanent desk for me or is it hot desking",
        ],
        "meeting rooms": [
            "how do I book the {room} room",
            "room booking shows a conflict but the room is empty",
            "need a large room for 40 people",
            "someone keeps squatting in {room}",
        ],
        "seating and moves": [
            "request a desk move for my team",
            "can we move to the {floor}",
            "my desk got reassigned while I was on vacation",
        ],
        "temperature": [
            "it's freezing on the {floor}",
            "AC not working in the {room} room",
            "too hot in {building} again",
        ],
        "cleaning and repairs": [
            "spill in the kitchen on the {floor}",
            "bathroom on {floor} is out of order",
            "my chair is broken",
            "light flickering above my desk",
        ],
        "ergonomics": [
            "how do I get an ergonomic assessment",
            "standing desk request",
            "need an ergonomic chair, my back hurts",
        ],
        "mail and packages": [
            "mailroom hours",
            "a package was delivered to the office for me",
            "how do I ship something from the office",
        ],
        "cafeteria": [
            "what are the cafe hours",
            "what's on the menu today",
            "coffee machine on the {floor} is broken",
        ],
        "shuttles": [
            "shuttle schedule between buildings",
            "is there a shuttle to the train station",
            "shuttle from {building} to HQ2",
        ],
        "building hours": [
            "is the building open on weekends",
            "how do I get after hours access",
            "office hours over the holidays",
        ],
        "physical security": [
            "someone tailgated through the door behind me",
            "where's lost and found",
            "found a stranger wandering the {floor}",
        ],
        "bikes and showers": [
            "where are the bike racks",
            "are there showers in {building}",
        ],
        "office supplies": [
            "where are office supplies kept",
            "we need a whiteboard in our area",
            "out of printer paper on the {floor}",
        ],
        "event spaces": [
            "how do I book the auditorium",
            "can we host an all-hands in the atrium",
            "catering for an event in {building}",
        ],
        "office locations": [
            "what's the address of the {city} office",
            "is there an office in {city}",
            "which building is the {team} team in",
        ],
        "accessibility": [
            "where is the accessible parking",
            "is {building} wheelchair accessible",
        ],
        "keys and lockers": [
            "lost the key to my drawer",
            "how do I get a locker",
        ],
        "safety": [
            "when is the next fire drill",
            "where's the first aid kit on {floor}",
            "where's the AED in {building}",
        ],
        "noise": [
            "construction noise next to our area all day",
            "can we get a quiet room on the {floor}",
        ],
    },
}

# Short, often ambiguous queries, each with the topic it is about; the large router gets them mostly right
# from the catalog descriptions, a bag-of-words model often has never seen the word.
SHORT: dict[str, dict[str, str]] = {
    "it_help": {
        "vpn down": "VPN connection",
        "password reset": "password reset",
        "locked out": "password reset",
        "wifi?": "office wifi",
        "printer": "printing",
        "mfa": "multi-factor authentication",
        "new laptop": "laptop refresh",
        "outlook broken": "email and Outlook",
        "access request": "access requests",
        "license expired": "tool licenses",
        "zoom not working": "collaboration apps",
        "account locked": "password reset",
        "admin rights": "software install",
        "ticket status": "IT tickets",
    },
    "hr_benefits": {
        "401k?": "401k plan",
        "pto balance": "vacation and PTO",
        "parental leave": "parental leave",
        "open enrollment": "medical plan enrollment",
        "hsa": "FSA and HSA",
        "dental": "dental coverage",
        "insurance card": "insurance cards",
        "sick day": "sick leave",
        "holidays 2026": "company holidays",
        "benefits": "benefits eligibility",
        "life insurance": "life and disability insurance",
        "claim denied": "insurance claims",
        "leave": "leave of absence",
    },
    "payroll_equity": {
        "w2": "tax forms",
        "payslip": "pay slips",
        "espp": "ESPP enrollment",
        "rsu vest": "RSU vesting",
        "payday?": "pay dates",
        "bonus": "bonus payments",
        "direct deposit": "direct deposit",
        "w4": "tax withholding",
        "pay stub": "pay slips",
        "tax form": "tax forms",
        "my shares": "selling shares",
        "pay": "pay dates",
    },
    "finance_earnings": {
        "q3 earnings": "earnings dates",
        "earnings date": "earnings dates",
        "revenue last quarter": "revenue results",
        "10-k": "SEC filings",
        "guidance": "guidance",
        "dividend": "buybacks and dividends",
        "margin": "gross margin",
        "eps": "earnings per share",
        "investor deck": "investor presentations",
        "results": "revenue results",
    },
    "product_docs": {
        "helios docs": "getting started",
        "sdk install": "SDK installation",
        "api reference": "API reference",
        "release notes": "release notes",
        "driver version": "driver versions",
        "docs": "customer documentation",
        "changelog": "release notes",
        "error E{code}": "error codes",
        "{product}": "getting started",
        "supported gpus": "compatibility",
    },
    "travel_expenses": {
        "expense report": "submitting expense reports",
        "per diem": "per diem and meals",
        "card declined": "corporate card",
        "reimbursement": "reimbursement status",
        "book flight": "booking flights",
        "hotel limit": "hotel policy",
        "receipt": "missing receipts",
        "mileage": "mileage",
        "concur": "submitting expense reports",
        "corporate card": "corporate card",
        "trip approval": "travel approval",
    },
    "facilities": {
        "parking?": "parking",
        "badge": "badge access",
        "book room": "meeting rooms",
        "desk booking": "desk booking",
        "lost badge": "lost badges",
        "shuttle": "shuttles",
        "cafe hours": "cafeteria",
        "too cold": "temperature",
        "visitor": "visitors",
        "lockers": "keys and lockers",
        "access": "badge access",
    },
}

# Context sentences that drag in another expert's vocabulary: the classic bag-of-words trap. The question that
# follows them belongs to a different expert; the large router reads past them.
DISTRACTORS: dict[str, list[str]] = {
    "it_help": [
        "My laptop was reimaged last week and",
        "IT already reset my password twice, and",
        "while I was waiting for VPN access,",
        "My new MacBook just arrived and",
        "after the Okta migration",
    ],
    "hr_benefits": [
        "I just came back from parental leave and",
        "I'm on the {plan} plan and",
        "I'm going on medical leave next month so",
        "my wife is pregnant, so with the benefits stuff going on,",
        "I just switched to part time and",
    ],
    "payroll_equity": [
        "my RSUs vested last week and",
        "I just got my first paycheck and",
        "since my bonus hit my account,",
        "I enrolled in the ESPP and",
        "after my salary increase",
    ],
    "finance_earnings": [
        "After the {quarter} earnings call",
        "with the stock up after earnings,",
        "I read the revenue numbers in the press release and",
        "since we beat guidance,",
    ],
    "product_docs": [
        "we're integrating {product} into our pipeline and",
        "I'm on the {product} {version} release team and",
        "a customer asked about the {product} API and",
        "while reading the {product} docs",
    ],
    "travel_expenses": [
        "I'm flying to {city} on {date} for a customer visit and",
        "I just got back from a trip to {city} and",
        "my expense report is still pending, but",
        "I have a corporate card and",
        "I'm booking travel for the offsite and",
    ],
    "facilities": [
        "I moved to {building} last month and",
        "since they changed the parking rules,",
        "I'm sitting on the {floor} now and",
        "my badge was replaced recently and",
        "we just moved desks, and",
    ],
}

GENERIC_CONTEXT = [
    "Sorry if this is the wrong place to ask.",
    "I'm new here (started two weeks ago).",
    "I tried searching the intranet but got nothing useful.",
    "My manager wasn't sure either.",
    "This has been going on since {date}.",
    "I asked a colleague but they are on vacation.",
    "Not urgent but would be good to know.",
    "Kind of urgent, I have a deadline on {date}.",
    "I've been going back and forth on this for a while.",
    "Asking for someone on my team too.",
]

OPENERS = ["hi, ", "hey team - ", "Hello, ", "quick q: ", "hi all, ", "Hi there. ", "question: ", "hey, "]
CLOSERS = ["thanks", "thx!", "ty", "Thanks in advance.", "any help appreciated", "pls", "asap please", "??"]

# --- cross-domain confusers: the truth is decided here, the production router sometimes picks an alternative

CONFUSERS: list[dict] = [
    {
        "topic": "buying a laptop",
        "truth": "it_help",
        "alts": ["travel_expenses", "finance_earnings"],
        "templates": [
            "can I expense a new laptop?",
            "I bought a laptop with my own money for the project, can I get reimbursed",
            "is a new laptop something I put on my expense report",
            "what's the budget for buying a laptop for my team",
        ],
    },
    {
        "topic": "ESPP purchase dates",
        "truth": "payroll_equity",
        "alts": ["finance_earnings", "hr_benefits"],
        "templates": [
            "ESPP purchase date",
            "when does the ESPP purchase happen, is it tied to the earnings release",
            "is the ESPP part of my benefits enrollment",
            "ESPP purchase price vs the stock price after earnings",
        ],
    },
    {
        "topic": "server room badge access",
        "truth": "facilities",
        "alts": ["it_help"],
        "templates": [
            "badge doesn't open the server room",
            "need badge access to the lab on the {floor}",
            "my badge stopped working after IT reset my account",
            "access to the data closet for a hardware install",
        ],
    },
    {
        "topic": "SDK license pricing",
        "truth": "product_docs",
        "alts": ["finance_earnings", "travel_expenses"],
        "templates": [
            "how much does the {product} license cost",
            "SDK license cost for enterprise customers",
            "pricing for a {product} commercial license",
            "do we charge customers per seat for {product}",
        ],
    },
    {
        "topic": "parking reimbursement",
        "truth": "travel_expenses",
        "alts": ["facilities"],
        "templates": [
            "parking reimbursement",
            "paid for parking at the airport, how do I get that back",
            "can I expense parking at the {building} garage when visiting",
            "parking fees on a customer visit, reimbursable?",
        ],
    },
    {
        "topic": "tax on RSUs",
        "truth": "payroll_equity",
        "alts": ["hr_benefits", "finance_earnings"],
        "templates": [
            "tax on RSUs",
            "why are my RSUs taxed as income",
            "are RSUs counted as a benefit for tax purposes",
            "how much tax will I owe when my stock vests",
        ],
    },
    {
        "topic": "home internet and phone bills",
        "truth": "travel_expenses",
        "alts": ["it_help", "hr_benefits"],
        "templates": [
            "reimbursement for my home internet",
            "can I expense my phone bill",
            "mobile plan reimbursement for my work phone",
            "is my home wifi upgrade reimbursable for remote work",
        ],
    },
    {
        "topic": "gym and wellness reimbursement",
        "truth": "hr_benefits",
        "alts": ["travel_expenses"],
        "templates": [
            "how do I get my gym membership reimbursed",
            "wellness reimbursement claim form",
            "submit my yoga class receipts for reimbursement",
        ],
    },
    {
        "topic": "tuition reimbursement",
        "truth": "hr_benefits",
        "alts": ["travel_expenses", "payroll_equity"],
        "templates": [
            "tuition reimbursement",
            "can I expense an online course",
            "is tuition reimbursement taxed",
            "company pays for my master's degree?",
        ],
    },
    {
        "topic": "meeting room AV",
        "truth": "it_help",
        "alts": ["facilities"],
        "templates": [
            "the screen in the {room} room won't connect",
            "zoom room in {building} isn't working",
            "camera in the {room} conference room is broken",
        ],
    },
    {
        "topic": "ergonomic equipment",
        "truth": "facilities",
        "alts": ["it_help"],
        "templates": [
            "ergonomic keyboard request",
            "I need a monitor arm for my desk",
            "standing desk and a bigger monitor for my back",
        ],
    },
    {
        "topic": "relocation package",
        "truth": "hr_benefits",
        "alts": ["travel_expenses", "payroll_equity"],
        "templates": [
            "relocation package for moving to {city}",
            "moving expenses for my relocation",
            "who pays for temporary housing when I relocate",
        ],
    },
    {
        "topic": "trading window",
        "truth": "payroll_equity",
        "alts": ["finance_earnings"],
        "templates": [
            "is the trading window open after earnings",
            "when does the blackout period end",
            "can I sell my shares before the earnings call",
        ],
    },
    {
        "topic": "bonus and company results",
        "truth": "payroll_equity",
        "alts": ["finance_earnings"],
        "templates": [
            "will the {quarter} results affect my bonus",
            "is the company bonus tied to revenue this year",
            "bonus payout percentage after the earnings miss",
        ],
    },
    {
        "topic": "401k deduction on pay",
        "truth": "payroll_equity",
        "alts": ["hr_benefits"],
        "templates": [
            "my paystub shows the wrong 401k deduction",
            "401k deduction missing from my paycheck",
            "401k contribution taken twice this pay period",
        ],
    },
    {
        "topic": "HSA payroll contributions",
        "truth": "hr_benefits",
        "alts": ["payroll_equity"],
        "templates": [
            "HSA contribution on my paycheck",
            "how much is taken from my pay for medical",
            "company HSA contribution, when does it hit",
        ],
    },
    {
        "topic": "pay during parental leave",
        "truth": "hr_benefits",
        "alts": ["payroll_equity"],
        "templates": [
            "am I paid during parental leave",
            "how will parental leave show on my paycheck",
            "is parental leave fully paid or partial",
        ],
    },
    {
        "topic": "driver on a work laptop",
        "truth": "it_help",
        "alts": ["product_docs"],
        "templates": [
            "latest driver update broke my work laptop display",
            "need to install the {product} driver on my work machine but I have no admin rights",
            "rollback the GPU driver on my laptop",
        ],
    },
    {
        "topic": "API pricing tiers",
        "truth": "product_docs",
        "alts": ["finance_earnings"],
        "templates": [
            "API rate limits and pricing tiers for {product}",
            "{api} cost per call for customers",
        ],
    },
    {
        "topic": "airport shuttle",
        "truth": "facilities",
        "alts": ["travel_expenses"],
        "templates": [
            "shuttle to the airport from HQ",
            "is there a company shuttle to SJC for my trip",
        ],
    },
    {
        "topic": "hotel near the office",
        "truth": "travel_expenses",
        "alts": ["facilities"],
        "templates": [
            "hotel near {building} for visiting from {city}",
            "which hotels close to HQ do we have rates with",
        ],
    },
    {
        "topic": "guest wifi",
        "truth": "it_help",
        "alts": ["facilities"],
        "templates": [
            "guest wifi password for my visitor",
            "visitors can't get on the wifi in {building}",
        ],
    },
    {
        "topic": "lactation rooms",
        "truth": "facilities",
        "alts": ["hr_benefits"],
        "templates": [
            "where's the lactation room",
            "mother's room booking in {building}",
            "returning from maternity leave, where can I pump",
        ],
    },
    {
        "topic": "payroll phishing",
        "truth": "it_help",
        "alts": ["payroll_equity"],
        "templates": [
            "got an email asking me to update my direct deposit, is it phishing",
            "someone emailed asking for my W-2, looks fake",
        ],
    },
    {
        "topic": "software on the corporate card",
        "truth": "travel_expenses",
        "alts": ["it_help"],
        "templates": [
            "can I pay for a {app} subscription with my corporate card",
            "expense a software license for {app}",
        ],
    },
    {
        "topic": "product revenue",
        "truth": "finance_earnings",
        "alts": ["product_docs"],
        "templates": [
            "how much revenue does {product} bring in",
            "is {product} revenue reported separately",
        ],
    },
    {
        "topic": "product CVE patching",
        "truth": "product_docs",
        "alts": ["it_help"],
        "templates": [
            "CVE in {product} {version}, do customers need to patch",
            "is the {product} vulnerability fixed in {version2}",
        ],
    },
    {
        "topic": "laptop stolen on a trip",
        "truth": "it_help",
        "alts": ["travel_expenses", "facilities"],
        "templates": [
            "laptop stolen on my business trip in {city}",
            "my bag with the work laptop was stolen at the airport",
        ],
    },
    {
        "topic": "Workday login for payslips",
        "truth": "it_help",
        "alts": ["payroll_equity"],
        "templates": [
            "can't log into Workday to see my payslip",
            "Workday says my account is locked, need my pay stub",
        ],
    },
    {
        "topic": "commuter benefits",
        "truth": "hr_benefits",
        "alts": ["facilities", "travel_expenses"],
        "templates": [
            "pre-tax transit pass",
            "caltrain pass through the commuter benefit",
            "commuter benefit card for parking at the station",
        ],
    },
]

# --- the week-4 product launch: new vocabulary, docs not indexed yet --------------------------------------

LAUNCH_PRODUCT = "Helios SDK 3.0"

LAUNCH_INTENTS: dict[str, dict[str, list[str]]] = {
    "product_docs": {
        "Helios 3.0 migration": [
            "migration guide from Helios 2.x to Helios SDK 3.0",
            "what replaced hlx_stream_open in Helios 3.0",
            "breaking changes in Helios SDK 3.0",
            "helios 3 migration",
        ],
        "Helios 3.0 features": [
            "does Helios 3.0 support graph capture",
            "how do fusion passes work in Helios SDK 3.0",
            "HX3 kernels in Helios 3.0 - docs?",
            "Helios Runtime 3 scheduling modes",
        ],
        "Helios 3.0 release notes": [
            "Helios SDK 3.0 release notes",
            "helios 3.0 known issues",
            "is Helios 3.0 GA or still preview",
        ],
        "Helios 3.0 API reference": [
            "API reference for hlx.graph in Helios 3.0",
            "helios 3 python bindings docs",
            "where are the Helios 3.0 samples",
        ],
    },
    "it_help": {
        "Helios 3.0 install on work machines": [
            "hlx-cli install fails on my work laptop",
            "need admin rights to install Helios SDK 3.0",
            "Helios 3.0 installer blocked by endpoint security",
            "how do I get Helios 3.0 on the build farm",
        ],
        "Helios 3.0 license server": [
            "Helios 3.0 license server unreachable from VPN",
            "helios 3 license activation error on my laptop",
        ],
    },
}

# --- out of scope: chit-chat and questions no expert serves -------------------------------------------------

OUT_OF_SCOPE: list[dict] = [
    {
        "kind": "greeting",
        "texts": ["hi", "hello", "hey", "test", "hello?", "good morning", "yo", "anyone there?"],
    },
    {"kind": "thanks", "texts": ["thanks!", "thank you", "ok thx", "that worked, thanks", "great", "cool"]},
    {
        "kind": "weather",
        "texts": [
            "what's the weather in Santa Clara",
            "will it rain tomorrow in {city}",
            "is it going to be hot this weekend",
        ],
    },
    {
        "kind": "creative",
        "texts": [
            "write me a poem",
            "write me a poem about Mondays",
            "tell me a joke",
            "write a haiku about my code review",
        ],
    },
    {
        "kind": "sports",
        "texts": ["who won the game last night", "49ers score?", "when does the world cup start"],
    },
    {
        "kind": "trivia",
        "texts": [
            "what's the capital of Australia",
            "how many ounces in a cup",
            "translate 'good morning' to German",
            "how tall is mount everest",
        ],
    },
    {
        "kind": "personal",
        "texts": [
            "recommend a good restaurant in {city}",
            "best place to buy a used car",
            "help me write my wedding speech",
            "what should I get my wife for her birthday",
        ],
    },
    {
        "kind": "coding",
        "texts": [
            "write a python function to reverse a linked list",
            "explain quicksort",
            "regex for an email address",
        ],
    },
    {
        "kind": "investing",
        "texts": ["should I buy bitcoin", "is it a good time to buy AMD stock", "best index fund?"],
    },
    {"kind": "gibberish", "texts": ["asdf", "????", "lol", "k", "."]},
]

# Where the production router sends out-of-scope messages when it has to pick something.
OOS_ROUTES: dict[str, list[str]] = {
    "greeting": ["it_help", "hr_benefits", "facilities"],
    "thanks": ["it_help", "hr_benefits", "travel_expenses"],
    "weather": ["facilities", "travel_expenses"],
    "creative": ["hr_benefits", "product_docs", "it_help"],
    "sports": ["facilities", "hr_benefits", "finance_earnings"],
    "trivia": ["product_docs", "it_help", "hr_benefits"],
    "personal": ["facilities", "travel_expenses", "hr_benefits"],
    "coding": ["product_docs", "it_help"],
    "investing": ["finance_earnings", "payroll_equity"],
    "gibberish": ["it_help", "hr_benefits"],
}

# Experts that a plain question is most plausibly confused with (used for rare misroutes of plain questions).
NEIGHBORS: dict[str, list[str]] = {
    "it_help": ["facilities", "product_docs", "travel_expenses"],
    "hr_benefits": ["payroll_equity", "travel_expenses"],
    "payroll_equity": ["hr_benefits", "finance_earnings"],
    "finance_earnings": ["payroll_equity", "product_docs"],
    "product_docs": ["it_help", "finance_earnings"],
    "travel_expenses": ["facilities", "payroll_equity", "hr_benefits"],
    "facilities": ["it_help", "travel_expenses"],
}

TEAM_NAMES: dict[str, str] = {
    "it_help": "IT",
    "hr_benefits": "HR benefits",
    "payroll_equity": "payroll",
    "finance_earnings": "finance",
    "product_docs": "product docs",
    "travel_expenses": "travel & expenses",
    "facilities": "facilities",
}

# --- answers: what the expert agent said (excerpted in the log) ---------------------------------------------

GOOD_ANSWERS: dict[str, list[str]] = {
    "it_help": [
        "Here's how to sort out {topic}: open the IT self-service portal, choose '{topic}' and follow {kb}. "
        "Most people are back up in a few minutes; if not, reply here and I'll open a ticket for you.",
        "This is covered in {kb} ({topic}). First sign out of all sessions, then restart and sign in again "
        "with SSO. If the problem persists I can create an IT ticket with your device details.",
    ],
    "hr_benefits": [
        "For {topic}, the 2026 Benefits Guide (section {section}) applies: you can make the change in the "
        "benefits portal within 30 days of the event, and the HR benefits team confirms by email.",
        "Good question about {topic}. Under the current plan year policy, eligible employees are covered "
        "from "
        "their first day; details and the enrollment link are in the Benefits Guide, section {section}.",
    ],
    "payroll_equity": [
        "About {topic}: you can see this in Workday under Pay > Payslips (and Equity > Grants for stock). "
        "Changes submitted before the 15th apply to the next pay run.",
        "For {topic}, payroll processes updates on the semi-monthly schedule. The equity portal shows vest "
        "and "
        "purchase details; tax documents are posted there each February.",
    ],
    "finance_earnings": [
        "On {topic}: the figures are in the latest earnings press release and CFO commentary on the investor "
        "relations site. Please rely only on public numbers when talking to people outside the company.",
        "The investor relations page has the {topic} details, including the webcast replay, the press "
        "release "
        "and the 10-Q. Internal questions can go to the IR team alias.",
    ],
    "product_docs": [
        "For {topic}, see the product documentation (docs portal > {product}, section {section}). It "
        "includes "
        "a compatibility table, step-by-step instructions and code samples in Python and C++.",
        "The {product} docs cover {topic} in the developer guide, section {section}; the release notes list "
        "the "
        "versions where behaviour changed.",
    ],
    "travel_expenses": [
        "For {topic}: per the Global Travel & Expense Policy (rev. 2026), book through the travel tool and "
        "submit receipts in Concur within 30 days. Reimbursements are paid with the next payroll run.",
        "Regarding {topic}, the T&E policy section {section} applies. Your manager approves in Concur, then "
        "finance audits and pays out, usually within 5 business days.",
    ],
    "facilities": [
        "For {topic}, open a Workplace request (category '{topic}') in the facilities portal; the site team "
        "usually responds the same day. For urgent building issues call the security desk.",
        "Facilities can help with {topic}: the site services page lists hours and contacts for each "
        "building, "
        "and you can book or report issues directly in the workplace app.",
    ],
}

RETRIEVAL_ANSWERS = [
    "I could not find any document about {topic} in the {team} knowledge base. You may want to contact the "
    "{team} team directly.",
    "I'm sorry, I don't have information about {topic}. Please check the intranet or open a request.",
    "According to the 2023 {team} policy, {topic} is handled by your local office. (This policy may have "
    "been "
    "updated since.)",
    "The closest article I found is '{other_topic}', which may not fully answer your question: please refer "
    "to "
    "the linked page for details.",
    "I found a page on {topic}, but the link points to an archived document that is no longer available.",
]

# Generation failures: the right documents, a wrong or useless answer. "any" applies to every expert.
GENERATION_ANSWERS: dict[str, list[str]] = {
    "any": [
        "There are a number of factors that affect {topic}. It depends on your situation, so please review "
        "the "
        "relevant policies and reach out if you have any further questions.",
        "To handle {topic}, first open the portal, then choose the relevant option, then follow the steps "
        "shown. If that does not work, try again later.",
        "{topic}: you need to submit form {kb} to your manager, who will forward it to the regional office "
        "for "
        "approval within 90 days.",
    ],
    "it_help": [
        "For {topic}, uninstall and reinstall the VPN client, then reset your password twice in a row."
    ],
    "hr_benefits": [
        "Great question! Yes, {topic} is fully covered at 100% for all employees and contractors worldwide, "
        "including family members, starting from day one.",
        "For {topic}, the annual limit is {amount} and unused amounts roll over indefinitely.",
    ],
    "payroll_equity": [
        "For {topic}: changes take effect immediately and are paid out on the 1st of every month, tax free.",
        "Your {topic} is calculated at a flat 15% discount on the highest price of the quarter.",
    ],
    "finance_earnings": [
        "Revenue for {quarter} was $71.3 billion, up 212% year over year, with a gross margin of 91%.",
        "The next earnings call is scheduled for {date}; guidance is not provided by the company.",
    ],
    "product_docs": [
        "{topic}: this is supported since version {version} and enabled by default; set HLX_FAST=1 to turn "
        "it "
        "on. All GPUs and operating systems are supported.",
        "Yes, {product} supports that. Call {api} with mode='auto' and it will be handled automatically.",
    ],
    "travel_expenses": [
        "Yes! {topic} is reimbursed up to {amount} per day, no receipts needed, and approval is automatic.",
        "Per policy, {topic} must be booked at least 60 days ahead and approved by a VP.",
    ],
    "facilities": [
        "For {topic}, just email the building manager; requests are handled within 15 minutes, 24/7.",
        "The {topic} service is available on every floor of every building, including weekends.",
    ],
}

LAUNCH_RETRIEVAL_ANSWERS = [
    "I could only find documentation for Helios SDK 2.6. In 2.6, {topic} is not available; please check the "
    "2.x developer guide.",
    "I couldn't find anything about {topic} in the documentation index. The latest release I know of is "
    "Helios SDK 2.6.",
    "According to the Helios 2.x release notes, hlx_stream_open is the recommended entry point. I did not "
    "find "
    "any 3.0 material.",
]

OFF_TOPIC_ANSWERS: dict[str, str] = {
    "it_help": "I'm the IT assistant. I can help with laptops, accounts, VPN and software. I couldn't match "
    "your "
    "question to an IT issue; could you share your device and the error message?",
    "hr_benefits": "I can help with benefits like health insurance, 401(k) and leave. Based on the Benefits "
    "Guide, your question doesn't seem to relate to a benefits plan.",
    "payroll_equity": "Payroll here. Your pay and equity details are in Workday. I didn't find a payroll "
    "item "
    "that matches your question.",
    "finance_earnings": "For company financial results, please see the latest earnings release on the "
    "investor "
    "relations site. I can't comment on individual expenses or purchases.",
    "product_docs": "The product documentation did not contain a match for your question. Try the docs "
    "portal "
    "search or the developer forums.",
    "travel_expenses": "Per the travel & expense policy, business expenses must be submitted in Concur "
    "within "
    "30 days. I couldn't find a travel policy section for this.",
    "facilities": "Facilities can help with badges, desks, parking and meeting rooms. Please open a "
    "Workplace "
    "request and tell us which building you're in.",
}

OOS_ANSWERS = [
    "I'm the {team} assistant and can only help with {team} questions.",
    "I couldn't find anything about that in the {team} knowledge base.",
    "Hi! How can I help you with {team} today?",
    "Sorry, I don't understand the question. Could you rephrase it?",
]

OOS_GOOD_ANSWERS = [
    "You're welcome! Anything else I can help with?",
    "Hi! I can help with work questions about benefits, pay, IT, travel, facilities and our products.",
    "I can't help with that one, I'm only set up for work topics like IT, HR, payroll and travel.",
]

# --- feedback comments, tied to the cause -------------------------------------------------------------------

COMMENTS: dict[str, list[str]] = {
    "routing": [
        "wrong team",
        "why did it send me to {routed_team}?",
        "this is a {true_team} question, not {routed_team}",
        "not what I asked",
        "answered a completely different question",
        "the bot thinks I'm asking about {routed_team} stuff",
        "wrong department again",
        "It routed me to {routed_team}. I need {true_team}.",
        "{routed_team}?? seriously",
        "this should go to {true_team}",
    ],
    "retrieval": [
        "the policy it quoted is from 2023",
        "couldn't find the doc",
        "that link is dead",
        "it says there's no article but I know there is one",
        "outdated info",
        "the page it pointed to is for the old version",
        "no answer, just 'contact the team'",
        "found nothing on {topic}??",
        "it linked an archived page",
    ],
    "launch_retrieval": [
        "nothing about Helios 3.0 yet?",
        "docs are for 2.x, not 3.0",
        "it doesn't know the new SDK exists",
        "3.0 is out, the answer is about 2.6",
    ],
    "generation": [
        "made up a number",
        "too vague",
        "that's wrong, the limit is different",
        "it contradicted itself",
        "generic fluff, didn't answer",
        "way too long and still didn't answer",
        "steps don't match what I see in the portal",
        "confidently wrong",
        "that form doesn't exist",
    ],
    "out_of_scope": [
        "it should just say it can't help",
        "why did it send me to {routed_team}? I was just saying hi",
        "useless",
        "just tell me you don't know",
        "lol what",
        "not a work question, fair, but the answer was weird",
    ],
    "satisfied": [
        "thanks, that worked",
        "perfect",
        "quick and accurate",
        "exactly what I needed",
        "helpful, thx",
        "👍",
        "good answer",
        "saved me a ticket",
    ],
}

# --- PII: names and the sentences that carry PII into a question -------------------------------------------

FIRST_NAMES = [
    "Priya",
    "Wei",
    "Carlos",
    "Anna",
    "Tomasz",
    "Aisha",
    "Kenji",
    "Maria",
    "David",
    "Noa",
    "Olusegun",
    "Sofia",
    "Rahul",
    "Emily",
    "Hiroshi",
    "Lena",
]
LAST_NAMES = [
    "Raman",
    "Zhang",
    "Mendoza",
    "Kowalski",
    "Okafor",
    "Tanaka",
    "Garcia",
    "Cohen",
    "Schmidt",
    "Nguyen",
    "Patel",
    "Brown",
    "Rossi",
    "Levy",
]

PII_SENTENCES: dict[str, list[str]] = {
    "email": ["You can reach me at {email}.", "please cc {email}", "my personal email is {email}"],
    "phone": ["call me at {phone}", "My cell is {phone} if that's easier.", "text {phone} please"],
    "card": ["card number is {card}", "the charge was on card {card}", "it's the card {card}, exp 09/28"],
    "employee_id": ["my employee id is {emp}", "({emp})", "Employee ID: {emp}"],
    "ip": ["my laptop's IP is {ip}", "connecting from {ip}"],
    "person": [
        "my manager {name} said to ask here.",
        "{name} from my team told me to check with you.",
        "asking on behalf of {name}.",
    ],
}

# Which PII an employee is likely to paste, by expert (weights over PII_SENTENCES kinds).
PII_BY_EXPERT: dict[str, dict[str, float]] = {
    "travel_expenses": {"card": 6, "phone": 2, "email": 1, "person": 1, "employee_id": 1},
    "it_help": {"ip": 3, "email": 2, "phone": 2, "employee_id": 1, "person": 1},
    "payroll_equity": {"employee_id": 3, "email": 2, "phone": 1, "person": 1, "card": 2},
    "hr_benefits": {"person": 3, "phone": 2, "email": 2, "employee_id": 2, "card": 1},  # the FSA/HSA card
    "facilities": {"employee_id": 2, "phone": 2, "person": 2, "email": 1},
    "finance_earnings": {"email": 2, "person": 2, "phone": 1},
    "product_docs": {"email": 2, "person": 2, "ip": 1},
}
