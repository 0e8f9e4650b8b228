"""Citations: every paper a claim cites, in one place (``<FIRSTAUTHOR><YEAR>``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Citation:
    authors: str
    year: int
    title: str
    venue: str = ""
    arxiv: str | None = None

    def short(self) -> str:
        first = self.authors.split(",")[0].split(" and ")[0].strip()
        etal = " et al." if ("," in self.authors or " and " in self.authors) else ""
        return f"{first}{etal} ({self.year})"

    def full(self) -> str:
        s = f"{self.authors} ({self.year}). {self.title}."
        if self.venue:
            s += f" {self.venue}."
        if self.arxiv:
            s += f" arXiv:{self.arxiv}."
        return s


NANDA2023 = Citation(
    authors="Neel Nanda, Lawrence Chan, Tom Lieberum, Jess Smith and Jacob Steinhardt",
    year=2023,
    title="Progress measures for grokking via mechanistic interpretability",
    venue="ICLR",
    arxiv="2301.05217",
)

POWER2022 = Citation(
    authors="Alethea Power, Yuri Burda, Harri Edwards, Igor Babuschkin and Vedant Misra",
    year=2022,
    title="Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets",
    venue="ICLR 2022 MATH-AI workshop",
    arxiv="2201.02177",
)

WANG2024 = Citation(
    authors="Siwei Wang, Yifei Shen, Shi Feng, Haoran Sun, Shang-Hua Teng and Wei Chen",
    year=2024,
    title="ALPINE: Unveiling the Planning Capability of Autoregressive Learning in Language Models",
    venue="NeurIPS",
    arxiv="2405.09220",
)

HAHN2020 = Citation(authors="Michael Hahn", year=2020,
                title="Theoretical Limitations of Self-Attention in Neural Sequence Models", venue="TACL",
                arxiv="1906.06755")

CHIANG2022 = Citation(authors="David Chiang and Peter Cholak", year=2022,
                  title="Overcoming a Theoretical Limitation of Self-Attention", venue="ACL", arxiv="2202.12172")

DELETANG2023 = Citation(
    authors="Gregoire Deletang, Anian Ruoss, Jordi Grau-Moya, Tim Genewein, Li Kevin Wenliang, Elliot Catt, "
            "Chris Cundy, Marcus Hutter, Shane Legg, Joel Veness and Pedro A. Ortega",
    year=2023, title="Neural Networks and the Chomsky Hierarchy", venue="ICLR", arxiv="2207.02098")

BHATTAMISHRA2020 = Citation(
    authors="Satwik Bhattamishra, Kabir Ahuja and Navin Goyal", year=2020,
    title="On the Ability and Limitations of Transformers to Recognize Formal Languages", venue="EMNLP",
    arxiv="2009.11264")

OLSSON2022 = Citation(
    authors="Catherine Olsson, Nelson Elhage, Neel Nanda, Nicholas Joseph, Nova DasSarma, Tom Henighan, Ben Mann, "
            "Amanda Askell, Yuntao Bai, Anna Chen, et al.",
    year=2022,
    title="In-context Learning and Induction Heads",
    venue="Transformer Circuits Thread",
    arxiv="2209.11895",
)

GARG2022 = Citation(
    authors="Shivam Garg, Dimitris Tsipras, Percy Liang and Gregory Valiant",
    year=2022,
    title="What Can Transformers Learn In-Context? A Case Study of Simple Function Classes",
    venue="NeurIPS",
    arxiv="2208.01066",
)

BU2024 = Citation(
    authors="Dake Bu, Wei Huang, Andi Han, Atsushi Nitanda, Taiji Suzuki, Qingfu Zhang and Hau-San Wong",
    year=2024,
    title="Provably Transformers Harness Multi-Concept Word Semantics for Efficient In-Context Learning",
    venue="NeurIPS",
    arxiv="2411.02199",
)

BIETTI2023 = Citation(
    authors="Alberto Bietti, Vivien Cabannes, Diane Bouchacourt, Herve Jegou and Leon Bottou",
    year=2023,
    title="Birth of a Transformer: A Memory Viewpoint",
    venue="NeurIPS",
    arxiv="2306.00802",
)

HOFFMANN2022 = Citation(
    authors="Jordan Hoffmann, Sebastian Borgeaud, Arthur Mensch, Elena Buchatskaya, Trevor Cai, Eliza Rutherford, "
            "Diego de Las Casas, Lisa Anne Hendricks, Johannes Welbl, Aidan Clark, et al.",
    year=2022,
    title="Training Compute-Optimal Large Language Models",
    venue="NeurIPS",
    arxiv="2203.15556",
)

BESIROGLU2024 = Citation(
    authors="Tamay Besiroglu, Ege Erdil, Matthew Barnett and Josh You",
    year=2024,
    title="Chinchilla Scaling: A replication attempt",
    arxiv="2404.10102",
)

CZECH2026 = Citation(
    authors="Eric Czech, Zhiwei Xu, Yael Elmatad, Yixin Wang and William Held",
    year=2026,
    title="Problems with Chinchilla Approach 2",
    arxiv="2603.22339",
)

KAPLAN2020 = Citation(
    authors="Jared Kaplan, Sam McCandlish, Tom Henighan, Tom B. Brown, Benjamin Chess, Rewon Child, Scott Gray, "
            "Alec Radford, Jeffrey Wu and Dario Amodei",
    year=2020,
    title="Scaling Laws for Neural Language Models",
    arxiv="2001.08361",
)

SCHAEFFER2023 = Citation(
    authors="Rylan Schaeffer, Brando Miranda and Sanmi Koyejo",
    year=2023,
    title="Are Emergent Abilities of Large Language Models a Mirage?",
    venue="NeurIPS",
    arxiv="2304.15004",
)

LUBANA2025 = Citation(
    authors="Ekdeep Singh Lubana, Kyogo Kawaguchi, Robert P. Dick and Hidenori Tanaka",
    year=2025,
    title="A Percolation Model of Emergence: Analyzing Transformers Trained on a Formal Language",
    venue="ICLR",
    arxiv="2408.12578",
)

ERDOS1960 = Citation(
    authors="Paul Erdős and Alfréd Rényi",
    year=1960,
    title="On the evolution of random graphs",
    venue="Publications of the Mathematical Institute of the Hungarian Academy of Sciences 5, 17-61",
)

RAFAILOV2023 = Citation(
    authors="Rafael Rafailov, Archit Sharma, Eric Mitchell, Stefano Ermon, Christopher D. Manning and Chelsea Finn",
    year=2023,
    title="Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
    venue="NeurIPS",
    arxiv="2305.18290",
)

AZAR2024 = Citation(
    authors="Mohammad Gheshlaghi Azar, Mark Rowland, Bilal Piot, Daniel Guo, Daniele Calandriello, Michal Valko "
            "and Rémi Munos",
    year=2024,
    title="A General Theoretical Paradigm to Understand Learning from Human Preferences",
    venue="AISTATS",
    arxiv="2310.12036",
)

GAO2023 = Citation(
    authors="Leo Gao, John Schulman and Jacob Hilton",
    year=2023,
    title="Scaling Laws for Reward Model Overoptimization",
    venue="ICML",
    arxiv="2210.10760",
)

ALLENZHU2023A = Citation(
    authors="Zeyuan Allen-Zhu and Yuanzhi Li",
    year=2023,
    title="Physics of Language Models: Part 3.1, Knowledge Storage and Extraction",
    venue="ICML 2024",
    arxiv="2309.14316",
)

ALLENZHU2023B = Citation(
    authors="Zeyuan Allen-Zhu and Yuanzhi Li",
    year=2023,
    title="Physics of Language Models: Part 3.2, Knowledge Manipulation",
    venue="ICLR 2025",
    arxiv="2309.14402",
)

ALLENZHU2024 = Citation(
    authors="Zeyuan Allen-Zhu and Yuanzhi Li",
    year=2024,
    title="Physics of Language Models: Part 3.3, Knowledge Capacity Scaling Laws",
    venue="ICLR 2025",
    arxiv="2404.05405",
)

GIANNOU2023 = Citation(
    authors="Angeliki Giannou, Shashank Rajput, Jy-yong Sohn, Kangwook Lee, Jason D. Lee and Dimitris Papailiopoulos",
    year=2023,
    title="Looped Transformers as Programmable Computers",
    venue="ICML",
    arxiv="2301.13196",
)

PEREZ2021 = Citation(
    authors="Jorge Pérez, Pablo Barceló and Javier Marinković",
    year=2021,
    title="Attention is Turing Complete",
    venue="JMLR 22(75)",
)
