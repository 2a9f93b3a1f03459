//! Situation playbooks: the coaching moves the library card falls back on when no
//! standard Q&A card matches. Each entry names a common B2B situation by its
//! keywords and gives a stage tag, self-check questions and actions in both languages.

/// One situation with bilingual coaching content.
#[derive(Debug)]
pub struct Playbook {
    pub keywords: &'static [&'static str],
    pub stage: (&'static str, &'static str),
    pub self_check: &'static [(&'static str, &'static str)],
    pub action_now: (&'static str, &'static str, &'static str, &'static str),
    pub action_later: (&'static str, &'static str, &'static str, &'static str),
}

/// The situations, most specific first. Tuple order is (zh, en), or for actions
/// (zh label, zh text, en label, en text).
pub const PLAYBOOKS: &[Playbook] = &[
    Playbook {
        keywords: &[
            "回扣",
            "好处费",
            "返点",
            "咨询费",
            "合规",
            "kickback",
            "bribe",
            "consulting fee",
            "compliance",
        ],
        stage: ("高风险", "High risk"),
        self_check: &[
            (
                "对方的暗示具体指向什么？是个人利益，还是项目确实需要的合规服务？",
                "What exactly is the hint asking for: a personal benefit, or a compliant service the project really needs?",
            ),
            (
                "公司的合规红线和上报流程是什么？你现在是否已经需要向上级报备？",
                "Where is your company's compliance line, and do you already need to report this to your manager?",
            ),
        ],
        action_now: (
            "守住底线",
            "不做任何私下承诺，把话题拉回项目价值与合规采购流程，并当天向直属上级和合规部门报备。",
            "Hold the line",
            "Make no private promise, steer the talk back to project value and the compliant buying process, and tell your manager and compliance the same day.",
        ),
        action_later: (
            "用价值替代好处",
            "一周内为对方准备能写进内部汇报的价值材料（ROI、案例），让他靠业绩而非私利支持你。",
            "Replace favours with value",
            "Within a week, give the contact material he can use internally (ROI, references), so he backs you for results, not personal gain.",
        ),
    },
    Playbook {
        keywords: &[
            "事故", "故障", "宕机", "崩", "瘫痪", "bug", "丢了", "投诉", "crash", "outage",
            "incident", "down",
        ],
        stage: ("危机爆发期", "Crisis"),
        self_check: &[
            (
                "客户此刻最大的损失是什么？谁在客户内部承受压力？",
                "What is the client losing right now, and who inside the client is taking the heat?",
            ),
            (
                "你能在一小时内拿到哪些事实和公司层面的承诺？",
                "Which facts and company-level commitments can you get within the hour?",
            ),
        ],
        action_now: (
            "第一时间担责",
            "立即联系客户负责人，承认影响、说明正在采取的措施，并承诺在确定时间内书面同步原因和补偿方案。",
            "Own it first",
            "Call the client's owner now: acknowledge the impact, say what is being done, and promise a written cause and remedy by a fixed time.",
        ),
        action_later: (
            "高层联动与持续透明",
            "请公司高层致电对方高层；在问题解决前按固定频率（如每 30 分钟）更新进展。",
            "Escalate and stay transparent",
            "Ask an executive of yours to call theirs, and send updates at a fixed rhythm (e.g. every 30 minutes) until it is fixed.",
        ),
    },
    Playbook {
        keywords: &[
            "不回",
            "失联",
            "已读",
            "没回复",
            "消失",
            "冷淡",
            "ghost",
            "silent",
            "dark",
            "no reply",
            "not responding",
        ],
        stage: ("高风险", "High risk"),
        self_check: &[
            (
                "你发出的最后一份材料，是否回应了联系人个人最在意的目标？",
                "Did the last thing you sent speak to the contact's own goals?",
            ),
            (
                "除了这位联系人，你还认识决策链上的哪些角色？",
                "Who else in the buying group do you know besides this contact?",
            ),
        ],
        action_now: (
            "停止追问，换成价值触达",
            "停止重复的电话和消息，发一条带新价值（行业案例或一页要点）的简短信息，并给对方一个体面回应的台阶。",
            "Stop chasing, add value",
            "Stop repeated calls and messages; send one short note with new value (a peer case or a one-page insight) that gives the contact an easy way to reply.",
        ),
        action_later: (
            "设定止损点",
            "如果 48 小时后仍无回复，通过另一个渠道或另一位角色再触达一次；两轮无回应就转入长期培育。",
            "Set a stop-loss",
            "If there is no reply within 48 hours, try once more through another channel or another person; after two silent rounds, move the account to long-term nurture.",
        ),
    },
    Playbook {
        keywords: &[
            "贵",
            "价格",
            "报价",
            "折扣",
            "降价",
            "打折",
            "预算",
            "差价",
            "price",
            "discount",
            "expensive",
            "budget",
            "cost",
        ],
        stage: ("高风险", "High risk"),
        self_check: &[
            (
                "你是否已经把价值量化成客户老板能看懂的数字（省多少、赚多少、少多少风险）？",
                "Have you turned the value into numbers the client's boss understands (money saved, revenue gained, risk avoided)?",
            ),
            (
                "价格异议背后真正的决策者是谁？他看到过你的价值论证吗？",
                "Who is the real decision maker behind the price objection, and has that person seen your value case?",
            ),
        ],
        action_now: (
            "先澄清，不让步",
            "先问清楚“贵”是和谁比、贵在哪里、是预算上限还是回报不清，在价值讲透之前不主动提折扣。",
            "Clarify before conceding",
            "Ask what \"expensive\" is compared with, where the gap is, and whether it is a budget cap or unclear return; offer no discount before the value is clear.",
        ),
        action_later: (
            "让步必须交换",
            "如果价值讲透后价格仍是唯一障碍，才考虑让步，并换取更长合同期、预付款或见到决策者的机会。",
            "Trade every concession",
            "Only if price is still the last obstacle after the value is clear, concede, and trade it for a longer term, prepayment or a meeting with the decision maker.",
        ),
    },
    Playbook {
        keywords: &[
            "竞品",
            "对手",
            "竞争",
            "免费",
            "白送",
            "低价",
            "competitor",
            "competition",
            "free trial",
            "cheaper",
        ],
        stage: ("高风险", "High risk"),
        self_check: &[
            (
                "在客户眼里，你和竞品真正的差异是什么？这个差异对他的业务意味着什么？",
                "In the client's eyes, what really separates you from the competitor, and what does that mean for the client's business?",
            ),
            (
                "“免费”或低价背后，客户要承担哪些隐性成本和风险？",
                "What hidden costs and risks come with the free or cheap offer?",
            ),
        ],
        action_now: (
            "把比较拉到总成本",
            "和客户一起列出三年总拥有成本与失败风险，让讨论从单价转到结果。",
            "Move the comparison to total cost",
            "Work out the three-year total cost and the cost of failure with the client, so the talk moves from unit price to outcomes.",
        ),
        action_later: (
            "用证据替代说法",
            "一周内安排一个同行客户的参考电话或现场，让第三方替你证明稳定性和服务。",
            "Let evidence speak",
            "Within a week, arrange a reference call or site visit with a peer customer who can vouch for reliability and service.",
        ),
    },
    Playbook {
        keywords: &[
            "老板",
            "决策",
            "ceo",
            "总经理",
            "引荐",
            "见不到",
            "拦着",
            "gatekeeper",
            "decision maker",
            "executive",
            "boss",
        ],
        stage: ("推进中", "In progress"),
        self_check: &[
            (
                "你的联系人为什么不愿意引荐？他担心失去什么？",
                "Why does your contact hold back the introduction, and what is he afraid of losing?",
            ),
            (
                "你能给决策者带来什么他在意、而联系人给不了的价值？",
                "What can you bring the decision maker that he cares about and your contact cannot give him?",
            ),
        ],
        action_now: (
            "让联系人成为英雄",
            "提议由联系人主导、你来支持的高层汇报，把功劳留给他。",
            "Make your contact the hero",
            "Propose an executive briefing that your contact leads and you support, so the credit is his.",
        ),
        action_later: (
            "多线接触",
            "两周内通过行业活动、公司高层或其他部门建立第二条联系，而不是绕过联系人硬闯。",
            "Build a second line",
            "Within two weeks, open a second line through an industry event, your own executives or another department, rather than going around your contact.",
        ),
    },
    Playbook {
        keywords: &[
            "拖",
            "推迟",
            "再看看",
            "下个月",
            "签",
            "卡住",
            "卡了",
            "forecast",
            "pipeline",
            "stall",
            "delay",
            "push back",
            "close",
        ],
        stage: ("推进中", "In progress"),
        self_check: &[
            (
                "客户内部有没有一个必须在某个时间前解决的问题？如果没有，这单为什么要现在签？",
                "Does the client have a problem that must be solved by a date? If not, why would they sign now?",
            ),
            (
                "经济决策者、使用者、技术把关者和你的内部教练，你分别见过谁？",
                "Which of the economic buyer, user buyer, technical buyer and your coach have you actually met?",
            ),
        ],
        action_now: (
            "确认真实的下一步",
            "约对方确认一个具体、可验证的下一步（日期、参与人、要交付的东西），没有下一步的单子不算真实商机。",
            "Pin down a real next step",
            "Agree on one concrete, checkable next step (date, people, deliverable); a deal with no next step is not a real opportunity.",
        ),
        action_later: (
            "清理管道",
            "每周复盘一次：连续两周没有推进的单子降级，把时间投给有时间压力和决策者参与的机会。",
            "Clean the pipeline",
            "Review weekly: downgrade deals that have not moved for two weeks and spend your time where there is a deadline and a decision maker.",
        ),
    },
    Playbook {
        keywords: &[
            "吃饭", "饭局", "饭桌", "请客", "喝酒", "拼酒", "酒量", "应酬", "送礼", "关系",
            "guanxi", "dinner", "drinking", "banquet", "gift",
        ],
        stage: ("推进中", "In progress"),
        self_check: &[
            (
                "这次见面你想让对方记住什么：你的专业、你的可靠，还是只是热闹？",
                "What should the client remember from this meeting: your expertise, your reliability, or just a pleasant evening?",
            ),
            (
                "你在关系上的投入，有没有同时推进对方的业务问题和决策进程？",
                "Does the time you invest in the relationship also move the client's business problem and decision forward?",
            ),
        ],
        action_now: (
            "以素养赢得信任",
            "守时、礼貌、照顾每一位在场的人，不拼酒、不夸口；把话题落在对方的业务和个人目标上，事后当天发一条简短的感谢。",
            "Win trust with good manners",
            "Be punctual and courteous to everyone at the table, skip drinking contests and boasting, keep the talk on the client's business and goals, and send a short thank-you the same day.",
        ),
        action_later: (
            "把关系转化为进展",
            "一周内用一份与对方问题相关的材料或一次现场调研跟进，让关系落到具体的下一步上。",
            "Turn the relationship into progress",
            "Within a week, follow up with material or a site visit tied to the client's problem, so the relationship leads to a concrete next step.",
        ),
    },
    Playbook {
        keywords: &["面试", "求职", "跳槽", "简历", "interview", "job", "hiring"],
        stage: ("知识储备", "Knowledge building"),
        self_check: &[
            (
                "这个岗位未来一年最需要解决的业务问题是什么？",
                "What business problem must this role solve in its first year?",
            ),
            (
                "你的哪段经历能证明你解决过同类问题，而不只是完成了指标？",
                "Which of your experiences proves you have solved that kind of problem, not just hit a number?",
            ),
        ],
        action_now: (
            "准备战略性提问",
            "准备 2–3 个关于公司战略、客户结构和团队挑战的问题，用提问展示你的判断力。",
            "Prepare strategic questions",
            "Prepare 2-3 questions about the company's strategy, customer mix and team challenges, and let the questions show your judgement.",
        ),
        action_later: (
            "面试后跟进",
            "面试后 24 小时内发一封简短的跟进邮件，补充一个与对方挑战相关的想法。",
            "Follow up",
            "Within 24 hours after the interview, send a short note that adds one idea about their challenge.",
        ),
    },
];

/// Generic self-check questions used when no playbook matches, and to top up.
pub const GENERIC_SELF_CHECK: &[(&str, &str)] = &[
    (
        "这件事里，经济决策者、使用者、技术把关者和内部教练分别是谁？你接触过几位？",
        "Who are the economic buyer, user buyer, technical buyer and coach here, and how many of them have you met?",
    ),
    (
        "客户要解决的业务问题是什么？你能用数字说清楚解决它的价值吗？",
        "What business problem is the client solving, and can you put a number on the value of solving it?",
    ),
    (
        "你现在的动作，是在帮客户做决定，还是在为自己的成交着急？",
        "Is your next move helping the client decide, or serving your own urge to close?",
    ),
];

/// Generic SPIN questions (label zh, text zh, label en, text en).
pub const GENERIC_SPIN: &[(&str, &str, &str, &str)] = &[
    (
        "了解现状",
        "为了更好地帮到您，能否说说目前这件事在贵司是怎么处理的、由哪些人参与？",
        "Situation",
        "So I can be useful, how is this handled in your company today, and who is involved?",
    ),
    (
        "确认问题",
        "在现在的做法里，哪一点最让您和团队头疼？",
        "Problem",
        "In the way it works today, what causes you and your team the most trouble?",
    ),
    (
        "放大影响",
        "如果这个问题再拖半年，会对业绩、成本或团队带来什么影响？",
        "Implication",
        "If this stays unsolved for another six months, what does it do to revenue, cost or the team?",
    ),
    (
        "确认价值",
        "如果能解决它，对您个人和公司最大的价值会是什么？",
        "Need-payoff",
        "If it were solved, what would be the biggest gain for you and for the company?",
    ),
];

/// Returns the playbook whose keywords best match `message`, if any.
pub fn matching(message: &str) -> Option<&'static Playbook> {
    let lower = message.to_lowercase();
    PLAYBOOKS
        .iter()
        .map(|p| (p, p.keywords.iter().filter(|k| lower.contains(*k)).count()))
        .filter(|(_, hits)| *hits > 0)
        .max_by_key(|(_, hits)| *hits)
        .map(|(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_price_message() {
        let playbook = matching("客户嫌贵，要不要打折").unwrap();
        assert_eq!(playbook.stage.0, "高风险");
        assert!(playbook.keywords.contains(&"贵"));
    }

    #[test]
    fn matching_english_silence() {
        let playbook = matching("The prospect went silent after our proposal").unwrap();
        assert!(playbook.keywords.contains(&"silent"));
    }

    #[test]
    fn matching_nothing() {
        assert!(matching("你好").is_none());
    }
}
